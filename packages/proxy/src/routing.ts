// Routing rules (config `routes`) compiled ONCE into plain predicate functions: nothing in a
// rule is interpreted per message. Each rule becomes an array of small tests; a request is
// checked rule by rule, first match wins (docs/configuration.md "routes").
//
// User prefixes (docs/dispatcher.md "Router semantics"): a run of CONSECUTIVE rules that each
// have a `user_prefix` condition is compiled into one character trie over all their prefixes.
// Inside the run the rule with the LONGEST matching prefix wins (equal prefixes: the earlier
// rule); if that rule's other conditions fail, the next-longest matching prefix is tried. Between
// runs and the other rules, first match wins. So 10,000 prefix rules cost one walk over the
// user part (plus the few candidate rules whose prefix matched), not 10,000 checks.
import { BlockList, isIP } from 'node:net'
import { canonicalName, parseUri, type SipMessage, type SipUri } from '@sipedge/sip'
import type { FrozenConfig, RouteRule } from '@sipedge/config'
import type { Destination } from './types.js'

/** What a predicate sees: the request, its parsed Request-URI, and where it came from. */
export type RoutePredicate = (req: SipMessage, ruri: SipUri, source: Destination) => boolean

export type CompiledAction =
  | { readonly type: 'register' }
  | { readonly type: 'lookup' }
  | { readonly type: 'dispatch'; readonly set: string }
  | { readonly type: 'forward'; readonly uri: string }
  | { readonly type: 'reject'; readonly code: number; readonly reason: string | undefined }

export interface CompiledRule {
  readonly index: number
  /** name, or "#index" when the rule has none (for logs and metrics). */
  readonly label: string
  readonly action: CompiledAction
  /** host[:port] replacing the Request-URI's host before forwarding, or null. */
  readonly rewriteHost: { host: string; port: number | null } | null
  readonly addHeaders: ReadonlyArray<readonly [string, string]>
  readonly tests: readonly RoutePredicate[]
  /** The user_prefix condition's prefixes (null: none), and the tests other than it. */
  readonly prefixes: readonly string[] | null
  readonly restTests: readonly RoutePredicate[]
  /** Times this rule decided (metrics). */
  hits: number
}

function allHold(tests: readonly RoutePredicate[], req: SipMessage, ruri: SipUri, source: Destination): boolean {
  for (let k = 0; k < tests.length; k++) if (!tests[k]!(req, ruri, source)) return false
  return true
}

/** A run of consecutive user_prefix rules: one trie, longest matching prefix first. */
export class PrefixGroup {
  readonly rules: readonly CompiledRule[]
  private readonly root: GroupNode
  /** Terminal nodes met on the walk (reused; match() is not re-entrant and never awaits). */
  private readonly hits: GroupNode[]

  constructor(rules: CompiledRule[]) {
    this.rules = rules
    this.root = new GroupNode()
    this.hits = []
    for (const r of rules) {
      for (const p of r.prefixes!) {
        let n = this.root
        for (let i = 0; i < p.length; i++) {
          const c = p.charCodeAt(i)
          let next = n.next.get(c)
          if (next === undefined) { next = new GroupNode(); n.next.set(c, next) }
          n = next
        }
        if (!n.rules.includes(r)) n.rules.push(r) // rules are added in order: earlier rule first
      }
    }
  }

  match(req: SipMessage, ruri: SipUri, source: Destination): CompiledRule | null {
    const user = ruri.user
    if (user === undefined) return null
    const hits = this.hits
    hits.length = 0
    let n: GroupNode | undefined = this.root
    if (n.rules.length > 0) hits.push(n)
    for (let i = 0; i < user.length; i++) {
      n = n.next.get(user.charCodeAt(i))
      if (n === undefined) break
      if (n.rules.length > 0) hits.push(n)
    }
    for (let h = hits.length - 1; h >= 0; h--) {
      const rs = hits[h]!.rules
      for (let k = 0; k < rs.length; k++) {
        const r = rs[k]!
        if (allHold(r.restTests, req, ruri, source)) { hits.length = 0; return r }
      }
    }
    hits.length = 0
    return null
  }
}

class GroupNode {
  readonly rules: CompiledRule[] = []
  readonly next = new Map<number, GroupNode>()
}

export class RouteTable {
  readonly rules: readonly CompiledRule[]
  /** What match() walks: single rules, and prefix groups standing for runs of prefix rules. */
  readonly steps: ReadonlyArray<CompiledRule | PrefixGroup>

  constructor(rules: CompiledRule[]) {
    this.rules = rules
    const steps: Array<CompiledRule | PrefixGroup> = []
    for (let i = 0; i < rules.length;) {
      if (rules[i]!.prefixes === null) { steps.push(rules[i]!); i++; continue }
      let j = i
      while (j < rules.length && rules[j]!.prefixes !== null) j++
      steps.push(j - i === 1 ? rules[i]! : new PrefixGroup(rules.slice(i, j)))
      i = j
    }
    this.steps = steps
  }

  /** The deciding rule (first match; longest prefix inside a run of prefix rules), or null. */
  match(req: SipMessage, ruri: SipUri, source: Destination): CompiledRule | null {
    const steps = this.steps
    for (let i = 0; i < steps.length; i++) {
      const s = steps[i]!
      if (s instanceof PrefixGroup) {
        const r = s.match(req, ruri, source)
        if (r !== null) { r.hits++; return r }
      } else if (allHold(s.tests, req, ruri, source)) {
        s.hits++
        return s
      }
    }
    return null
  }
}

// ------------------------------------------------------------------------------ prefix trie

/** Character trie over user-part prefixes; `longest` walks the user once. */
export class PrefixTrie {
  private readonly root: TrieNode = new TrieNode()
  size = 0

  add(prefix: string): void {
    let n = this.root
    for (let i = 0; i < prefix.length; i++) {
      const c = prefix.charCodeAt(i)
      let next = n.next.get(c)
      if (next === undefined) { next = new TrieNode(); n.next.set(c, next) }
      n = next
    }
    if (!n.terminal) this.size++
    n.terminal = true
  }

  /** Length of the longest listed prefix of `s`, -1 when none ("" listed: 0). */
  longest(s: string): number {
    let n: TrieNode | undefined = this.root
    let best = n.terminal ? 0 : -1
    for (let i = 0; i < s.length; i++) {
      n = n.next.get(s.charCodeAt(i))
      if (n === undefined) break
      if (n.terminal) best = i + 1
    }
    return best
  }
}

class TrieNode {
  terminal = false
  readonly next = new Map<number, TrieNode>()
}

// ------------------------------------------------------------------------------ compile

export interface RouteCompileDeps {
  /** Source-address sets of each dispatcher set ("ip:port" and "ip"), kept up to date by the dispatcher. */
  sourceSet(setName: string): ReadonlySet<string>
}

function domainTest(list: readonly string[]): RoutePredicate {
  const exact = new Set<string>()
  const suffixes: string[] = []
  for (const d of list) {
    const l = d.toLowerCase()
    if (l.startsWith('*.')) suffixes.push(l.slice(1)) // ".example.com"
    else exact.add(l)
  }
  if (suffixes.length === 0) return (_r, u) => exact.has(u.host.toLowerCase())
  return (_r, u) => {
    const h = u.host.toLowerCase()
    if (exact.has(h)) return true
    for (let i = 0; i < suffixes.length; i++) if (h.endsWith(suffixes[i]!)) return true
    return false
  }
}

function sourceTest(sets: readonly ReadonlySet<string>[]): RoutePredicate {
  return (_r, _u, src) => {
    const a = src.address
    const ap = a + ':' + src.port
    for (let i = 0; i < sets.length; i++) if (sets[i]!.has(ap) || sets[i]!.has(a)) return true
    return false
  }
}

function netTest(list: readonly string[]): RoutePredicate {
  const bl = new BlockList()
  for (const c of list) {
    const slash = c.indexOf('/')
    const addr = slash < 0 ? c : c.slice(0, slash)
    const fam = isIP(addr) === 6 ? 'ipv6' : 'ipv4'
    const prefix = slash < 0 ? (fam === 'ipv6' ? 128 : 32) : Number(c.slice(slash + 1))
    bl.addSubnet(addr, prefix, fam)
  }
  return (_r, _u, src) => {
    const a = src.address
    return bl.check(a, a.includes(':') ? 'ipv6' : 'ipv4')
  }
}

function headerTest(name: string, regex: string, ignoreCase: boolean): RoutePredicate {
  const canon = canonicalName(name)
  const re = new RegExp(regex, ignoreCase ? 'i' : '')
  return req => {
    const hs = req.headers
    for (let i = 0; i < hs.length; i++) {
      const f = hs[i]!
      if (f.name === canon && re.test(req.valueOf(f))) return true
    }
    return false
  }
}

export function compileRule(rule: FrozenConfig['routes'][number] | RouteRule, deps: RouteCompileDeps): CompiledRule {
  const m = rule.match
  const tests: RoutePredicate[] = []
  // Cheapest tests first: method and transport are a Set lookup on a string we already have.
  if (m.method !== null) {
    const s = new Set(m.method)
    tests.push(req => s.has(req.method))
  }
  if (m.transport !== null) {
    const s = new Set<string>(m.transport)
    tests.push((_r, _u, src) => s.has(src.transport))
  }
  if (m.domain !== null) tests.push(domainTest(m.domain))
  let prefixTest: RoutePredicate | null = null
  if (m.user_prefix !== null) {
    const trie = new PrefixTrie()
    for (const p of m.user_prefix) trie.add(p)
    prefixTest = (_r, u) => u.user !== undefined && trie.longest(u.user) >= 0
    tests.push(prefixTest)
  }
  if (m.source !== null) tests.push(sourceTest(m.source.map(n => deps.sourceSet(n))))
  if (m.source_net !== null) tests.push(netTest(m.source_net))
  if (m.header !== null) for (const h of m.header) tests.push(headerTest(h.name, h.regex, h.ignore_case))
  const restTests = prefixTest === null ? tests : tests.filter(x => x !== prefixTest)
  const a = rule.action
  let action: CompiledAction
  switch (a.type) {
    case 'register': action = { type: 'register' }; break
    case 'lookup': action = { type: 'lookup' }; break
    case 'dispatch': action = { type: 'dispatch', set: a.set }; break
    case 'forward': parseUri(a.uri); action = { type: 'forward', uri: a.uri }; break
    case 'reject': action = { type: 'reject', code: a.code, reason: a.reason ?? undefined }; break
  }
  return {
    index: rule.index,
    label: rule.name ?? '#' + rule.index,
    action,
    rewriteHost: rule.rewrite_host === null ? null : { host: rule.rewrite_host.host, port: rule.rewrite_host.port },
    addHeaders: rule.add_headers.map(h => [h.name, h.value] as const),
    tests,
    prefixes: m.user_prefix === null ? null : [...m.user_prefix],
    restTests,
    hits: 0,
  }
}

export function compileRoutes(config: FrozenConfig, deps: RouteCompileDeps): RouteTable {
  return new RouteTable(config.routes.map(r => compileRule(r, deps)))
}
