// pcap (libpcap classic format) writer and reader for SIP over UDP/IPv4; no dependencies.
// Writer: Ethernet + IPv4 + UDP records (link type 1). Reader: link types Ethernet (1), Linux
// cooked v1 (113, `tshark -i any`), v2 (276), raw IPv4 (228/101) and BSD loopback (0); micro- and
// nanosecond magic, both byte orders. Non-UDP, non-IPv4 and fragmented packets are skipped.
import { readFileSync, writeFileSync } from 'node:fs'

function ip4(s) { return s.split('.').map(Number) }

function ipChecksum(b, off) {
  let sum = 0
  for (let i = 0; i < 20; i += 2) sum += b.readUInt16BE(off + i)
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16)
  return ~sum & 0xffff
}

/** packets: [{ ts (µs since the epoch), src, sport, dst, dport, data: Buffer }] */
export function pcapBuffer(packets) {
  const parts = []
  const g = Buffer.alloc(24)
  g.writeUInt32LE(0xa1b2c3d4, 0); g.writeUInt16LE(2, 4); g.writeUInt16LE(4, 6)
  g.writeInt32LE(0, 8); g.writeUInt32LE(0, 12); g.writeUInt32LE(65535, 16); g.writeUInt32LE(1, 20)
  parts.push(g)
  let id = 1
  for (const p of packets) {
    const data = Buffer.isBuffer(p.data) ? p.data : Buffer.from(p.data)
    const len = 14 + 20 + 8 + data.length
    const r = Buffer.alloc(16 + 42)
    const ts = Math.round(p.ts)
    r.writeUInt32LE(Math.floor(ts / 1e6), 0); r.writeUInt32LE(ts % 1e6, 4); r.writeUInt32LE(len, 8); r.writeUInt32LE(len, 12)
    // Ethernet: locally administered MACs derived from the addresses, IPv4 ethertype
    const e = 16
    r.writeUInt16BE(0x0200, e); Buffer.from(ip4(p.dst)).copy(r, e + 2)
    r.writeUInt16BE(0x0200, e + 6); Buffer.from(ip4(p.src)).copy(r, e + 8)
    r.writeUInt16BE(0x0800, e + 12)
    const ip = e + 14
    r[ip] = 0x45; r[ip + 1] = 0; r.writeUInt16BE(20 + 8 + data.length, ip + 2); r.writeUInt16BE(id++ & 0xffff, ip + 4)
    r.writeUInt16BE(0x4000, ip + 6); r[ip + 8] = 64; r[ip + 9] = 17; r.writeUInt16BE(0, ip + 10)
    Buffer.from(ip4(p.src)).copy(r, ip + 12); Buffer.from(ip4(p.dst)).copy(r, ip + 16)
    r.writeUInt16BE(ipChecksum(r, ip), ip + 10)
    const u = ip + 20
    r.writeUInt16BE(p.sport, u); r.writeUInt16BE(p.dport, u + 2); r.writeUInt16BE(8 + data.length, u + 4); r.writeUInt16BE(0, u + 6)
    parts.push(r, data)
  }
  return Buffer.concat(parts)
}

export function writePcap(file, packets) {
  writeFileSync(file, pcapBuffer(packets))
}

/** Returns [{ ts (µs), src, sport, dst, dport, data }] for the UDP/IPv4 packets of a capture. */
export function readPcap(file) {
  const b = readFileSync(file)
  if (b.length < 24) throw new Error(`${file}: not a pcap file (too short)`)
  const magicLE = b.readUInt32LE(0)
  let le, nano
  if (magicLE === 0xa1b2c3d4) { le = true; nano = false } else if (magicLE === 0xa1b23c4d) { le = true; nano = true }
  else if (b.readUInt32BE(0) === 0xa1b2c3d4) { le = false; nano = false } else if (b.readUInt32BE(0) === 0xa1b23c4d) { le = false; nano = true }
  else throw new Error(`${file}: not a classic pcap file (pcapng? convert with: tshark -F pcap -r in.pcapng -w out.pcap)`)
  const u32 = (o) => le ? b.readUInt32LE(o) : b.readUInt32BE(o)
  const link = u32(20) & 0x0fffffff
  const out = []
  let off = 24
  let guard = 0
  while (off + 16 <= b.length && guard++ < 10_000_000) {
    const sec = u32(off), frac = u32(off + 4), incl = u32(off + 8)
    const rec = off + 16
    off = rec + incl
    if (off > b.length) break
    let ip
    if (link === 1) {
      let et = b.readUInt16BE(rec + 12), p = rec + 14
      if (et === 0x8100) { et = b.readUInt16BE(rec + 16); p = rec + 18 }
      if (et !== 0x0800) continue
      ip = p
    } else if (link === 113) { if (b.readUInt16BE(rec + 14) !== 0x0800) continue; ip = rec + 16 }
    else if (link === 276) { if (b.readUInt16BE(rec) !== 0x0800) continue; ip = rec + 20 }
    else if (link === 228 || link === 101 || link === 12) ip = rec
    else if (link === 0) ip = rec + 4
    else throw new Error(`${file}: unsupported link type ${link}`)
    if ((b[ip] >> 4) !== 4 || b[ip + 9] !== 17) continue
    const ihl = (b[ip] & 15) * 4
    const flags = b.readUInt16BE(ip + 6)
    if ((flags & 0x2000) !== 0 || (flags & 0x1fff) !== 0) continue // fragment
    const udp = ip + ihl
    const ulen = b.readUInt16BE(udp + 4)
    out.push({
      ts: sec * 1e6 + (nano ? Math.floor(frac / 1000) : frac),
      src: `${b[ip + 12]}.${b[ip + 13]}.${b[ip + 14]}.${b[ip + 15]}`, sport: b.readUInt16BE(udp),
      dst: `${b[ip + 16]}.${b[ip + 17]}.${b[ip + 18]}.${b[ip + 19]}`, dport: b.readUInt16BE(udp + 2),
      data: Buffer.from(b.subarray(udp + 8, Math.min(off, udp + ulen))),
    })
  }
  return out
}
