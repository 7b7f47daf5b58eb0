// A tiny authoritative DNS server on 127.0.0.1 (UDP) for tests of how phones find the edge
// without an outbound proxy (RFC 3263: NAPTR, SRV, A). It answers the A and SRV records it is
// given, an empty NOERROR for other types of a known name, NXDOMAIN otherwise, and logs every
// question so a test can see which lookups the client made.
import { createSocket, type Socket } from 'node:dgram'

export interface SrvRecord { priority: number; weight: number; port: number; target: string }
export interface Zone { [name: string]: { A?: string[]; SRV?: SrvRecord[] } }
export interface DnsQuestion { name: string; type: string }

const TYPES: Record<number, string> = { 1: 'A', 28: 'AAAA', 33: 'SRV', 35: 'NAPTR' }

function encodeName(name: string): Buffer {
  const parts = name.replace(/\.$/, '').split('.').filter(p => p !== '')
  return Buffer.concat([...parts.map(p => Buffer.concat([Buffer.from([p.length]), Buffer.from(p, 'ascii')])), Buffer.from([0])])
}

function readName(b: Buffer, off: number): { name: string; end: number } {
  const labels: string[] = []
  let i = off
  for (let guard = 0; guard < 64; guard++) {
    const len = b[i]
    if (len === undefined) throw new Error('truncated name')
    if (len === 0) return { name: labels.join('.'), end: i + 1 }
    if ((len & 0xc0) !== 0) throw new Error('compressed question name')
    labels.push(b.subarray(i + 1, i + 1 + len).toString('ascii'))
    i += 1 + len
  }
  throw new Error('name too long')
}

export class DnsServer {
  readonly questions: DnsQuestion[] = []
  private readonly sock: Socket
  port = 0
  constructor(readonly zone: Zone) {
    this.sock = createSocket('udp4')
    this.sock.on('message', (m, r) => {
      try {
        const reply = this.answer(m)
        if (reply !== null) this.sock.send(reply, r.port, r.address)
      } catch { /* malformed: ignore */ }
    })
  }

  async listen(port = 0): Promise<number> {
    await new Promise<void>(r => this.sock.bind(port, '127.0.0.1', () => r()))
    this.port = this.sock.address().port
    return this.port
  }

  private answer(q: Buffer): Buffer | null {
    if (q.length < 12 || q.readUInt16BE(4) !== 1) return null
    const { name, end } = readName(q, 12)
    const qtype = q.readUInt16BE(end)
    const lname = name.toLowerCase()
    this.questions.push({ name: lname, type: TYPES[qtype] ?? String(qtype) })
    const rec = this.zone[lname]
    const answers: Buffer[] = []
    if (rec !== undefined && qtype === 1) {
      for (const a of rec.A ?? []) answers.push(this.rr(1, Buffer.from(a.split('.').map(Number))))
    }
    if (rec !== undefined && qtype === 33) {
      for (const s of rec.SRV ?? []) {
        const head = Buffer.alloc(6)
        head.writeUInt16BE(s.priority, 0)
        head.writeUInt16BE(s.weight, 2)
        head.writeUInt16BE(s.port, 4)
        answers.push(this.rr(33, Buffer.concat([head, encodeName(s.target)])))
      }
    }
    const h = Buffer.alloc(12)
    q.copy(h, 0, 0, 2) // id
    // QR, AA, RD copied, RA; RCODE 3 (NXDOMAIN) for unknown names
    h.writeUInt16BE(0x8400 | (q.readUInt16BE(2) & 0x0100) | 0x0080 | (rec === undefined ? 3 : 0), 2)
    h.writeUInt16BE(1, 4)
    h.writeUInt16BE(answers.length, 6)
    return Buffer.concat([h, q.subarray(12, end + 4), ...answers])
  }

  /** A resource record whose name points at the question (offset 12). */
  private rr(type: number, rdata: Buffer): Buffer {
    const b = Buffer.alloc(12)
    b.writeUInt16BE(0xc00c, 0)
    b.writeUInt16BE(type, 2)
    b.writeUInt16BE(1, 4)
    b.writeUInt32BE(30, 6)
    b.writeUInt16BE(rdata.length, 10)
    return Buffer.concat([b, rdata])
  }

  close(): void { try { this.sock.close() } catch { /* closed */ } }
}
