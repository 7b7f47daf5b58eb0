// A private network lab for the HA tests: Linux network namespaces joined by veth pairs on a
// bridge, with addresses that exist only inside those namespaces (nothing is added to the host's
// own namespace, nothing is routed to a real interface, so no packet can leave the machine).
// Processes are started inside a namespace with `ip netns exec`; every one is tracked and
// SIGKILLed by id at destroy(), and deleting the namespaces removes their interfaces.
//
//   client namespace <prefix>-c: bridge br0 (the "switch"), client/app/redis addresses on it
//   node namespaces  <prefix>-a, <prefix>-b: eth0 (veth), its peer enslaved to br0
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { waitForOutput } from './index.js'

const IP = process.env['IP'] ?? 'ip'

export interface RunResult { status: number | null; stdout: string; stderr: string }

function run(cmd: string, args: readonly string[], timeoutMs = 10_000): RunResult {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs })
  if (r.error !== undefined) return { status: null, stdout: '', stderr: r.error.message }
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' }
}

function has(cmd: string, args: readonly string[] = ['--version']): boolean {
  const r = spawnSync(cmd, args, { stdio: 'ignore', timeout: 5000 })
  return r.error === undefined
}

/**
 * Why this machine cannot run the namespace lab, or null when it can. Checks by doing: a
 * namespace is created and deleted, a veth pair and a bridge are made inside it.
 */
export function netnsMissing(tools: readonly string[] = []): string | null {
  if (process.platform !== 'linux') return `network namespaces need Linux (this is ${process.platform})`
  if (!has(IP, ['-V'])) return 'the `ip` command (iproute2) is not installed'
  for (const t of tools) {
    if (!has(t, t === 'keepalived' ? ['--version'] : t === 'curl' ? ['--version'] : ['--version']))
      return `\`${t}\` is not installed${t === 'keepalived' ? ' (Debian package keepalived; .ci/run installs it)' : ''}`
  }
  const probe = `sehvprobe${process.pid}`
  const add = run(IP, ['netns', 'add', probe])
  if (add.status !== 0) return `cannot create a network namespace (\`ip netns add\`: ${add.stderr.trim() || 'exit ' + add.status}); needs root / CAP_SYS_ADMIN + CAP_NET_ADMIN`
  try {
    const veth = run(IP, ['-n', probe, 'link', 'add', 'p0', 'type', 'veth', 'peer', 'name', 'p1'])
    if (veth.status !== 0) return `cannot create a veth pair in a namespace: ${veth.stderr.trim()}`
    const br = run(IP, ['-n', probe, 'link', 'add', 'br0', 'type', 'bridge'])
    if (br.status !== 0) return `cannot create a bridge in a namespace: ${br.stderr.trim()}`
    return null
  } finally {
    run(IP, ['netns', 'del', probe])
  }
}

function pidAlive(pid: number): boolean {
  try { process.kill(pid, 0); return true } catch (err) { return (err as NodeJS.ErrnoException).code === 'EPERM' }
}

/** Namespaces named `sehv<pid>-*` left by a test process that died without its teardown. */
export function removeStaleLabs(): string[] {
  const list = run(IP, ['netns', 'list'])
  const gone: string[] = []
  for (const line of list.stdout.split('\n')) {
    const name = line.trim().split(/\s+/)[0] ?? ''
    const m = /^sehv(\d+)-[a-z0-9]+$/.exec(name)
    if (m === null || pidAlive(Number(m[1]))) continue
    // processes still running in our own stale namespace were started by an earlier run of this lab
    for (const p of run(IP, ['netns', 'pids', name]).stdout.split('\n')) {
      const pid = Number(p.trim())
      if (Number.isInteger(pid) && pid > 1) try { process.kill(pid, 'SIGKILL') } catch { /* gone */ }
    }
    run(IP, ['netns', 'del', name])
    gone.push(name)
  }
  return gone
}

export interface LabNode { readonly ns: string; readonly ip: string }

export interface LabOptions {
  /** /24 prefix of the lab subnet, e.g. "10.77.0" (default). */
  subnet?: string
  /** Node names (namespace suffix) and host numbers. Default a=.11, b=.12. */
  nodes?: ReadonlyArray<{ name: string; host: number }>
  /** Extra addresses on the client side's bridge (host numbers), e.g. phones and app servers. */
  clientHosts?: readonly number[]
}

/** The lab: create() builds it, destroy() removes everything (idempotent, never throws). */
export class NetLab {
  readonly prefix: string
  readonly subnet: string
  readonly client: LabNode
  readonly nodes: Map<string, LabNode>
  readonly clientHosts: readonly number[]
  /** Every `ip` command run, in order (for the runbook and for failure reports). */
  readonly commands: string[] = []
  private readonly procs = new Set<ChildProcess>()
  private created: string[] = []
  /** errors the lab's child processes emitted (spawn failures, writes after exit); a test may report them */
  readonly errors: string[] = []

  constructor(o: LabOptions = {}) {
    this.prefix = `sehv${process.pid}`
    this.subnet = o.subnet ?? '10.77.0'
    this.client = { ns: `${this.prefix}-c`, ip: `${this.subnet}.2` }
    this.nodes = new Map((o.nodes ?? [{ name: 'a', host: 11 }, { name: 'b', host: 12 }]).map(n => [n.name, { ns: `${this.prefix}-${n.name}`, ip: `${this.subnet}.${n.host}` }]))
    this.clientHosts = o.clientHosts ?? []
  }

  node(name: string): LabNode {
    const n = this.nodes.get(name)
    if (n === undefined) throw new Error(`no lab node ${name}`)
    return n
  }

  /** Runs `ip ARGS`; throws with its stderr on failure. */
  ip(...args: string[]): string {
    this.commands.push(`ip ${args.join(' ')}`)
    const r = run(IP, args)
    if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim() || 'exit ' + r.status}`)
    return r.stdout
  }

  /** Runs a command inside namespace `ns` and waits for it (bounded). */
  exec(ns: string, cmd: string, args: readonly string[], timeoutMs = 10_000): RunResult {
    return run(IP, ['netns', 'exec', ns, cmd, ...args], timeoutMs)
  }

  create(): void {
    const c = this.client.ns
    this.ip('netns', 'add', c)
    this.created.push(c)
    for (const n of this.nodes.values()) { this.ip('netns', 'add', n.ns); this.created.push(n.ns) }
    for (const ns of this.created) this.ip('-n', ns, 'link', 'set', 'lo', 'up')
    this.ip('-n', c, 'link', 'add', 'br0', 'type', 'bridge')
    this.ip('-n', c, 'link', 'set', 'br0', 'up')
    this.ip('-n', c, 'addr', 'add', `${this.client.ip}/24`, 'dev', 'br0')
    for (const h of this.clientHosts) this.ip('-n', c, 'addr', 'add', `${this.subnet}.${h}/24`, 'dev', 'br0')
    for (const [name, n] of this.nodes) {
      // created directly inside the namespaces: the host's namespace never holds these links
      this.ip('link', 'add', 'eth0', 'netns', n.ns, 'type', 'veth', 'peer', 'name', `v${name}`, 'netns', c)
      this.ip('-n', c, 'link', 'set', `v${name}`, 'master', 'br0')
      this.ip('-n', c, 'link', 'set', `v${name}`, 'up')
      this.ip('-n', n.ns, 'addr', 'add', `${n.ip}/24`, 'dev', 'eth0')
      this.ip('-n', n.ns, 'link', 'set', 'eth0', 'up')
      // what deploy/keepalived/sysctl-sipedge.conf sets on a real node: bind the VIP before holding it
      const s = this.exec(n.ns, 'sysctl', ['-qw', 'net.ipv4.ip_nonlocal_bind=1'])
      this.commands.push(`ip netns exec ${n.ns} sysctl -qw net.ipv4.ip_nonlocal_bind=1`)
      if (s.status !== 0) throw new Error(`sysctl net.ipv4.ip_nonlocal_bind=1 in ${n.ns}: ${s.stderr.trim()}`)
    }
  }

  /** IPv4 addresses on `dev` in namespace `ns` (ip -o -4 addr). */
  addresses(ns: string, dev = 'eth0'): string[] {
    const r = run(IP, ['-n', ns, '-o', '-4', 'addr', 'show', 'dev', dev])
    if (r.status !== 0) return []
    return [...r.stdout.matchAll(/inet (\d+\.\d+\.\d+\.\d+)\//g)].map(m => m[1]!)
  }

  /** The node whose eth0 holds `ip` (null: none; several: the first, see holders()). */
  holder(ip: string): string | null {
    return this.holders(ip)[0] ?? null
  }

  holders(ip: string): string[] {
    const out: string[] = []
    for (const [name, n] of this.nodes) if (this.addresses(n.ns).includes(ip)) out.push(name)
    return out
  }

  /** Starts `cmd` inside `ns`; tracked, killed at destroy(). `ip netns exec` execs, so child.pid is the command's pid. */
  spawn(ns: string, cmd: string, args: readonly string[], o: SpawnOptions = {}): ChildProcess {
    const child = spawn(IP, ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...o })
    this.procs.add(child)
    child.once('exit', () => this.procs.delete(child))
    // a spawn failure or a write to a closed IPC channel/pipe of a killed process must not
    // become an uncaught 'error' that ends the test file with no failed assertion
    child.on('error', err => { this.errors.push(`${cmd} in ${ns}: ${err.message}`) })
    for (const s of [child.stdin, child.stdout, child.stderr]) s?.on('error', () => { /* the process is gone; its exit says so */ })
    // a test process that dies (uncaught error) must not leave the lab's processes behind
    const orphan = (): void => { try { child.kill('SIGKILL') } catch { /* gone */ } }
    process.once('exit', orphan)
    child.once('exit', () => process.off('exit', orphan))
    return child
  }

  /**
   * A node loses power: every process in its namespace (all started by this lab) is SIGKILLed
   * and its link goes down, so nothing it had configured (a VIP keepalived held) is heard again.
   */
  powerOff(name: string): void {
    const n = this.node(name)
    for (const line of run(IP, ['netns', 'pids', n.ns]).stdout.split('\n')) {
      const pid = Number(line.trim())
      if (Number.isInteger(pid) && pid > 1) try { process.kill(pid, 'SIGKILL') } catch { /* gone */ }
    }
    this.ip('-n', n.ns, 'link', 'set', 'eth0', 'down')
  }

  /** Kills every process started here (SIGKILL, by pid) and deletes the namespaces. */
  async destroy(): Promise<void> {
    const waits: Array<Promise<void>> = []
    for (const p of this.procs) {
      if (p.exitCode !== null || p.signalCode !== null) continue
      waits.push(new Promise<void>(r => { const t = setTimeout(r, 3000); p.once('exit', () => { clearTimeout(t); r() }) }))
      try { p.kill('SIGKILL') } catch { /* gone */ }
    }
    await Promise.all(waits)
    for (const ns of this.created.reverse()) {
      // anything still inside (a grandchild of ours, e.g. a keepalived check script) goes too
      for (const line of run(IP, ['netns', 'pids', ns]).stdout.split('\n')) {
        const pid = Number(line.trim())
        if (Number.isInteger(pid) && pid > 1) try { process.kill(pid, 'SIGKILL') } catch { /* gone */ }
      }
      run(IP, ['netns', 'del', ns])
    }
    this.created = []
  }
}

/** Starts a process in the lab and waits for a line of its output (bounded); kills it on failure. */
export async function spawnReady(lab: NetLab, ns: string, cmd: string, args: readonly string[], ready: RegExp, ms = 30_000): Promise<{ child: ChildProcess; output: () => string }> {
  const child = lab.spawn(ns, cmd, args)
  let out = ''
  child.stdout!.on('data', d => { out = (out + d).slice(-200_000) })
  child.stderr!.on('data', d => { out = (out + d).slice(-200_000) })
  try {
    await waitForOutput(child, ready, ms)
  } catch (err) {
    try { child.kill('SIGKILL') } catch { /* gone */ }
    throw new Error(`${cmd} in ${ns}: ${(err as Error).message}\n${out.slice(-4000)}`)
  }
  return { child, output: () => out }
}
