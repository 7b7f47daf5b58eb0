// Heap a parsed INVITE keeps while it is held (a live call's request, issue 17): N messages
// parsed and kept, bare (start line and header index) and with every header getter read, then
// with releaseParsed() called on them. Bytes of V8 heap per message after full GCs, excluding the
// raw bytes. Run: node --expose-gc benchmarks/parsed-heap.mjs   (build @sipedge/sip first)
import { parseMessage } from '@sipedge/sip'

const N = Number(process.env.N ?? 20_000)
const crlf = s => Buffer.from(s.replace(/\n/g, '\r\n'))
const sdp = 'v=0\no=alice 2890844526 2890844526 IN IP4 198.51.100.7\ns=-\nc=IN IP4 198.51.100.7\nt=0 0\nm=audio 49170 RTP/AVP 0 8 101\na=rtpmap:0 PCMU/8000\na=rtpmap:8 PCMA/8000\na=rtpmap:101 telephone-event/8000\na=sendrecv\n'
const invite = i => crlf(`INVITE sip:bob${i}@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK776asdhds${i};rport
Max-Forwards: 70
To: Bob <sip:bob${i}@biloxi.example.com>
From: Alice <sip:alice${i}@atlanta.example.com>;tag=1928301774${i}
Call-ID: a84b4c76e66710${i}@pc33.atlanta.example.com
CSeq: 314159 INVITE
Contact: <sip:alice${i}@127.0.0.1:5061>
Content-Type: application/sdp
Content-Length: ${Buffer.byteLength(sdp.replace(/\n/g, '\r\n'))}

${sdp}`)

if (typeof globalThis.gc !== 'function') throw new Error('run with node --expose-gc')
const bufs = Array.from({ length: N }, (_, i) => invite(i))
const heap = () => { gc(); gc(); return process.memoryUsage().heapUsed }
const readAll = m => { m.callId; m.cseq; m.from; m.to; m.topVia; m.vias; m.requestUri; m.contacts; m.routes; m.recordRoutes; m.maxForwards }

const out = {}
for (const mode of ['bare', 'every getter read', 'read, then releaseParsed()']) {
  const h0 = heap()
  const kept = bufs.map(b => {
    const m = parseMessage(b)
    if (mode !== 'bare') readAll(m)
    if (mode.startsWith('read, then')) m.releaseParsed()
    return m
  })
  out[mode] = Math.round((heap() - h0) / kept.length)
  kept.length = 0
}
console.log(`parsed INVITE of ${bufs[0].length} bytes, ${N} kept; V8 heap per message:`)
for (const [k, v] of Object.entries(out)) console.log(`  ${k.padEnd(28)} ${v} B`)
