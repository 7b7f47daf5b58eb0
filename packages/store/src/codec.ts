import { Packr } from 'msgpackr'
import { StoreError, StoreErrorCode } from './errors.js'
import type { Ban, Binding, Credential, Dialog, DialogState } from './types.js'

// Plain MessagePack (no records extension): the bytes are the same for both backends and
// readable by any msgpack decoder. Records are stored as positional arrays, which keeps a
// binding at ~150 bytes instead of repeating every field name.
const packr = new Packr({ useRecords: false, moreTypes: false })

/** Packs into a fresh buffer (msgpackr's own result is a view into a reused buffer). */
export function encode(value: unknown): Buffer {
  return Buffer.from(packr.pack(value))
}

export function decode(buf: Uint8Array): unknown {
  return packr.unpack(buf)
}

const FORMAT = 1

/** The identity of a binding: (instance, reg-id) for an outbound flow (RFC 5626 §6), else the Contact URI. */
export function bindingKey(b: Pick<Binding, 'contact' | 'instance' | 'regId'>): string {
  return b.instance !== undefined && b.instance !== null && b.regId !== undefined && b.regId !== null
    ? `${b.instance};reg-id=${b.regId}`
    : b.contact
}

export function checkBinding(aor: string, b: Binding, nodeId: string | undefined): Binding {
  if (typeof b.contact !== 'string' || b.contact.length === 0) bad('binding.contact must be a non-empty string')
  if (typeof b.q !== 'number' || !(b.q >= 0 && b.q <= 1)) bad(`binding.q must be within 0..1, got ${String(b.q)}`)
  if (typeof b.expires !== 'number' || !Number.isFinite(b.expires)) bad('binding.expires must be an epoch-ms number')
  if (!b.received || typeof b.received.address !== 'string') bad('binding.received must give transport, address, port, socketId, connId')
  return {
    aor,
    contact: b.contact,
    instance: b.instance ?? undefined,
    regId: b.regId ?? undefined,
    q: b.q,
    expires: b.expires,
    callId: String(b.callId ?? ''),
    cseq: Number(b.cseq ?? 0),
    path: Array.isArray(b.path) ? b.path.map(String) : [],
    received: {
      transport: String(b.received.transport),
      address: b.received.address,
      port: Number(b.received.port),
      socketId: Number(b.received.socketId ?? 0),
      connId: Number(b.received.connId ?? 0),
    },
    userAgent: b.userAgent ?? undefined,
    updatedAt: typeof b.updatedAt === 'number' ? b.updatedAt : Date.now(),
    nodeId: b.nodeId ?? nodeId,
    nat: typeof b.nat === 'boolean' ? b.nat : undefined,
  }
}

function bad(message: string): never {
  throw new StoreError(StoreErrorCode.BAD_VALUE, message)
}

// Element 12 (nat) was added later: records written before it have 12 elements and decode with
// nat undefined; a reader from before it ignores the extra element.
type BindingTuple = [
  string, string | null, number | null, number, number, string, number, string[],
  [string, string, number, number, number], string | null, number, string | null, (boolean | null)?,
]

export function encodeBindings(list: readonly Binding[]): Buffer {
  const out: BindingTuple[] = new Array(list.length)
  for (let i = 0; i < list.length; i++) {
    const b = list[i]!
    const r = b.received
    out[i] = [
      b.contact, b.instance ?? null, b.regId ?? null, b.q, b.expires, b.callId, b.cseq, b.path,
      [r.transport, r.address, r.port, r.socketId, r.connId], b.userAgent ?? null, b.updatedAt, b.nodeId ?? null, b.nat ?? null,
    ]
  }
  return encode([FORMAT, out])
}

export function decodeBindings(aor: string, buf: Uint8Array | null | undefined): Binding[] {
  if (!buf || buf.length === 0) return []
  const [, tuples] = decode(buf) as [number, BindingTuple[]]
  const out: Binding[] = new Array(tuples.length)
  for (let i = 0; i < tuples.length; i++) {
    const t = tuples[i]!
    const r = t[8]
    out[i] = {
      aor,
      contact: t[0],
      instance: t[1] ?? undefined,
      regId: t[2] ?? undefined,
      q: t[3],
      expires: t[4],
      callId: t[5],
      cseq: t[6],
      path: t[7],
      received: { transport: r[0], address: r[1], port: r[2], socketId: r[3], connId: r[4] },
      userAgent: t[9] ?? undefined,
      updatedAt: t[10],
      nodeId: t[11] ?? undefined,
      nat: typeof t[12] === 'boolean' ? t[12] : undefined,
    }
  }
  return out
}

type DialogTuple = [string, string, DialogState, number, number, number, string[] | null, string | null]

const STATES: ReadonlySet<string> = new Set(['early', 'confirmed', 'terminated'])

export function checkDialog(d: Dialog, nodeId: string | undefined): Dialog {
  if (typeof d.id !== 'string' || d.id.length === 0) bad('dialog.id must be a non-empty string')
  if (!STATES.has(d.state)) bad(`dialog.state must be early, confirmed or terminated, got ${String(d.state)}`)
  if (typeof d.expiresAt !== 'number' || !Number.isFinite(d.expiresAt)) bad('dialog.expiresAt must be an epoch-ms number')
  return {
    id: d.id,
    setName: String(d.setName ?? ''),
    destination: String(d.destination ?? ''),
    state: d.state,
    createdAt: Number(d.createdAt ?? 0),
    lastActivity: Number(d.lastActivity ?? d.createdAt ?? 0),
    expiresAt: d.expiresAt,
    routeSet: d.routeSet ? d.routeSet.map(String) : undefined,
    nodeId: d.nodeId ?? nodeId,
  }
}

export function encodeDialog(d: Dialog): Buffer {
  const t: DialogTuple = [d.setName, d.destination, d.state, d.createdAt, d.lastActivity, d.expiresAt, d.routeSet ?? null, d.nodeId ?? null]
  return encode([FORMAT, t])
}

export function decodeDialog(id: string, buf: Uint8Array): Dialog {
  const [, t] = decode(buf) as [number, DialogTuple]
  return {
    id, setName: t[0], destination: t[1], state: t[2], createdAt: t[3], lastActivity: t[4], expiresAt: t[5],
    routeSet: t[6] ?? undefined, nodeId: t[7] ?? undefined,
  }
}

export function encodeBan(b: Ban): Buffer {
  return encode([FORMAT, b.until, b.reason, b.createdAt])
}

export function decodeBan(key: string, buf: Uint8Array): Ban {
  const [, until, reason, createdAt] = decode(buf) as [number, number, string, number]
  return { key, until, reason, createdAt }
}

/** A counter: [format, value, window end (epoch ms)]. */
export function encodeCounter(n: number, until: number): Buffer {
  return encode([FORMAT, n, until])
}

export function decodeCounter(buf: Uint8Array): { n: number; until: number } {
  const [, n, until] = decode(buf) as [number, number, number]
  return { n, until }
}

export function checkCounter(key: string, windowMs: number, by: number): void {
  checkKey('counter key', key)
  if (typeof windowMs !== 'number' || !(windowMs > 0) || !Number.isFinite(windowMs)) bad('counter window must be a positive number of ms')
  if (typeof by !== 'number' || !(by > 0) || !Number.isSafeInteger(by)) bad('counter increment must be a positive integer')
}

export function encodeCredential(c: Credential): Buffer {
  return encode([FORMAT, c.ha1Md5 ?? null, c.ha1Sha256 ?? null])
}

export function decodeCredential(buf: Uint8Array): Credential {
  const [, md5, sha] = decode(buf) as [number, string | null, string | null]
  return { ha1Md5: md5 ?? undefined, ha1Sha256: sha ?? undefined }
}

/**
 * A dialog id from the Call-ID and both tags (RFC 3261 §12). The tags are sorted, so the
 * id is the same whichever side's From/To a request carries.
 */
export function dialogId(callId: string, tagA: string, tagB = ''): string {
  return tagA <= tagB ? `${callId};${tagA};${tagB}` : `${callId};${tagB};${tagA}`
}

/** A ban key: the source IP, or IP + domain for a per-domain ban. */
export function banKey(ip: string, domain?: string): string {
  return domain ? `${ip}|${domain.toLowerCase()}` : ip
}

export function checkKey(kind: string, key: string): void {
  if (typeof key !== 'string' || key.length === 0) bad(`${kind} must be a non-empty string`)
  // LMDB's key limit is 1978 bytes; leave room for the index tuple around it.
  if (key.length > 256 && Buffer.byteLength(key) > 1024) {
    throw new StoreError(StoreErrorCode.KEY_TOO_LONG, `${kind} is longer than 1024 bytes`)
  }
}
