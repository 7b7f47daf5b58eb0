// The registry's exposition: valid Prometheus text, every family typed, histograms consistent,
// bounded labels, values from the aggregator and the sources.
import t from 'tap'
import {
  BanReason, DestinationSlots, DropReason, KeepaliveResult, MetricsAggregator, ProbeResult, ResponseDirection, TransactionKind,
  codeSlot, createMetricsRegistry, methodIndex, transportIndex,
} from '../dist/index.js'
import { parseExposition } from './fixtures/expo-parser.js'

function filled() {
  const agg = MetricsAggregator.create({ workers: 2 })
  const dest = new DestinationSlots({ pbx: { destinations: [{ uri: 'sip:127.0.0.2:5070' }, { uri: 'sip:"odd\\name"@127.0.0.3' }] } })
  agg.setDestinations(dest)
  const main = agg.main()
  main.requestReceived(methodIndex('INVITE'), transportIndex('udp'))
  main.requestReceived(methodIndex('FOO'), transportIndex('wss'))
  main.requestSent(methodIndex('INVITE'), transportIndex(2))
  main.response(ResponseDirection.Local, 486)
  main.response(ResponseDirection.Received, 299)
  main.response(ResponseDirection.Received, 42) // not a SIP status: ignored
  main.inviteProvisional(0.004)
  main.inviteFinal(3)
  main.inviteFinal(500)
  main.nonInviteFinal(0.0001)
  main.transactionStarted(TransactionKind.ServerInvite)
  main.dialogStarted(dest.slot('pbx', 'sip:127.0.0.2:5070'))
  main.dialogStarted(0)
  main.probe(dest.slot('pbx', 'sip:127.0.0.2:5070'), ProbeResult.Timeout)
  main.drop(DropReason.Flood)
  main.ban(BanReason.Flood)
  main.keepalive(transportIndex('tls'), KeepaliveResult.Sent, 3)
  main.keepalive(transportIndex('tls'), KeepaliveResult.Answered, 2)
  main.keepaliveSeconds(transportIndex('tls'), 0.25)
  main.bindingsRemoved()
  main.sample()
  const m = createMetricsRegistry({
    aggregator: agg,
    version: '1.2.3',
    sources: {
      rings: () => [{ worker: 0, direction: 'in', used: 10, capacity: 1024, pushed: 5, refused: 1, wakeups: 2 }],
      connections: () => ({ tcp: 3, wss: 1 }),
      engineCounters: () => ({ udpIn: 7, ringFull: 1, udpNoCallId: 2, streamNoCallId: 3, workerCrashes: 1, somethingNew: 9 }),
      workersAlive: () => 2,
      registrations: async () => ({ aors: 4, bindings: 6 }),
      dispatcher: async () => [{ set: 'pbx', uri: 'sip:127.0.0.2:5070', state: 'draining' }],
      bansActive: () => { throw new Error('store down') },
      natKeepalives: () => ({ sent: [0, 5, 1, 0, 0], answered: [0, 4, 0, 0, 0], failed: [0, 1, 0, 0, 0], seconds: [0, 0.01, 0.5, 0, 0] }),
    },
  })
  m.setConfigGeneration(3)
  m.configReloaded(true)
  m.configReloaded(false)
  m.setReady(true)
  return { agg, m }
}

const value = (fams: ReturnType<typeof parseExposition>, name: string, labels: Record<string, string> = {}, sample = name): number | undefined =>
  fams.get(name)?.samples.find(s => s.name === sample && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value

t.test('exposition parses strictly and carries the values', async t => {
  const { m } = filled()
  t.equal(m.contentType, 'text/plain; version=0.0.4; charset=utf-8')
  const text = await m.metrics()
  const fams = parseExposition(text)
  // every defined metric is in the output with its declared type and a HELP text
  for (const d of m.describe()) {
    const f = fams.get(d.name)
    t.ok(f, `${d.name} present`)
    t.equal(f?.type, d.type, `${d.name} type`)
    t.ok((f?.help.length ?? 0) > 10, `${d.name} help`)
  }
  t.equal(value(fams, 'sipedge_requests_received_total', { method: 'INVITE', transport: 'udp' }), 1)
  t.equal(value(fams, 'sipedge_requests_received_total', { method: 'other', transport: 'wss' }), 1)
  t.equal(value(fams, 'sipedge_requests_sent_total', { method: 'INVITE', transport: 'tcp' }), 1)
  t.equal(value(fams, 'sipedge_responses_total', { direction: 'local', class: '4xx', code: '486' }), 1)
  t.equal(value(fams, 'sipedge_responses_total', { direction: 'received', class: '2xx', code: 'other' }), 1)
  t.equal(fams.get('sipedge_responses_total')?.samples.length, 2, '42 was not counted')
  const h = 'sipedge_transaction_invite_final_seconds'
  t.equal(value(fams, h, { le: '2.5' }, `${h}_bucket`), 0)
  t.equal(value(fams, h, { le: '5' }, `${h}_bucket`), 1)
  t.equal(value(fams, h, { le: '+Inf' }, `${h}_bucket`), 2)
  t.equal(value(fams, h, {}, `${h}_count`), 2)
  t.equal(value(fams, h, {}, `${h}_sum`), 503)
  t.equal(value(fams, 'sipedge_transactions_active', { kind: 'server_invite' }), 1)
  t.equal(value(fams, 'sipedge_dialogs_active', { set: 'pbx', destination: 'sip:127.0.0.2:5070' }), 1)
  t.equal(value(fams, 'sipedge_dialogs_active', { set: 'none', destination: 'none' }), 1)
  t.equal(value(fams, 'sipedge_dialogs_active', { set: 'pbx', destination: 'sip:"odd\\name"@127.0.0.3' }), 0, 'label escaping round-trips')
  t.equal(value(fams, 'sipedge_dispatcher_probes_total', { destination: 'sip:127.0.0.2:5070', result: 'timeout' }), 1)
  t.equal(value(fams, 'sipedge_dispatcher_destination_state', { destination: 'sip:127.0.0.2:5070', state: 'draining' }), 1)
  t.equal(value(fams, 'sipedge_dispatcher_destination_state', { destination: 'sip:127.0.0.2:5070', state: 'active' }), 0)
  t.equal(value(fams, 'sipedge_registrations_aors'), 4)
  t.equal(value(fams, 'sipedge_registrations_bindings'), 6)
  t.equal(value(fams, 'sipedge_messages_dropped_total', { reason: 'flood' }), 1)
  t.equal(value(fams, 'sipedge_bans_total', { reason: 'flood' }), 1)
  t.equal(value(fams, 'sipedge_nat_keepalives_total', { transport: 'tls', result: 'sent' }), 4, 'the workers\' and the primary\'s summed')
  t.equal(value(fams, 'sipedge_nat_keepalives_total', { transport: 'tcp', result: 'failed' }), 1, 'the primary\'s stream keep-alives')
  t.equal(value(fams, 'sipedge_nat_keepalives_total', { transport: 'tls', result: 'answered' }), 2)
  t.equal(value(fams, 'sipedge_nat_keepalives_total', { transport: 'udp', result: 'failed' }), 0, 'every transport and result is reported')
  t.equal(value(fams, 'sipedge_nat_keepalive_seconds_total', { transport: 'tls' }), 0.75)
  t.equal(value(fams, 'sipedge_nat_bindings_removed_total'), 1)
  t.equal(fams.get('sipedge_bans_active')?.samples.length, 0, 'a failing source leaves its series out')
  t.equal(value(fams, 'sipedge_scrape_errors_total', { source: 'bans' }), 1, '... and is counted')
  t.equal(value(fams, 'sipedge_ring_drops_total', { worker: '0', direction: 'in' }), 1)
  t.equal(value(fams, 'sipedge_connections', { transport: 'tcp' }), 3)
  t.equal(value(fams, 'sipedge_connections', { transport: 'tls' }), 0)
  t.equal(value(fams, 'sipedge_transport_messages_total', { direction: 'in', kind: 'datagram' }), 7)
  t.equal(value(fams, 'sipedge_messages_lost_total', { reason: 'no_call_id' }), 5, 'udp + stream summed')
  t.equal(value(fams, 'sipedge_messages_lost_total', { reason: 'ring_full' }), 1)
  t.equal(value(fams, 'sipedge_worker_restarts_total'), 1)
  t.equal(value(fams, 'sipedge_workers_alive'), 2)
  t.equal(value(fams, 'sipedge_config_generation'), 3)
  t.equal(value(fams, 'sipedge_config_reloads_total', { result: 'error' }), 1)
  t.equal(value(fams, 'sipedge_ready'), 1)
  t.equal(value(fams, 'sipedge_build_info', { version: '1.2.3' }), 1)
  t.ok((value(fams, 'sipedge_thread_heap_used_bytes', { thread: 'main' }) ?? 0) > 0)
  t.notOk(fams.get('sipedge_thread_heap_used_bytes')?.samples.some(s => s.labels['thread'] === 'worker0'), 'unsampled threads are not reported')
  t.ok((value(fams, 'sipedge_process_resident_memory_bytes') ?? 0) > 0)
})

t.test('names follow the conventions; labels are bounded', async t => {
  const { m } = filled()
  for (const d of m.describe()) {
    t.match(d.name, /^sipedge_[a-z0-9_]+$/, d.name)
    if (d.type === 'counter') t.match(d.name, /_total$/, `${d.name}: counters end in _total`)
    else t.notMatch(d.name, /_total$/, `${d.name}: only counters end in _total`)
    for (const l of d.labels) t.notMatch(l, /call|user|aor|addr|ip|id$/i, `${d.name}: no per-user/per-call label (${l})`)
  }
  t.equal(new Set(m.describe().map(d => d.name)).size, m.describe().length, 'unique names')
})

t.test('works without aggregator or sources', async t => {
  const m = createMetricsRegistry()
  const fams = parseExposition(await m.metrics())
  t.equal(value(fams, 'sipedge_ready'), 0)
  t.equal(fams.get('sipedge_requests_received_total')?.samples.length, 0)
  t.equal(value(fams, 'sipedge_transaction_non_invite_seconds', { le: '+Inf' }, 'sipedge_transaction_non_invite_seconds_bucket'), 0)
})

t.test('a slow async source is cut off', async t => {
  const m = createMetricsRegistry({ sourceTimeoutMs: 50, sources: { registrations: () => new Promise(() => {}) } })
  const fams = parseExposition(await m.metrics())
  t.equal(fams.get('sipedge_registrations_aors')?.samples.length, 0)
  // the error counter is collected while the source is still pending: it shows on the next scrape
  const next = parseExposition(await m.metrics())
  t.equal(value(next, 'sipedge_scrape_errors_total', { source: 'registrations' }), 1, 'one failure for the shared query')
})

t.test('status code slots', async t => {
  t.equal(codeSlot(99), -1)
  t.equal(codeSlot(700), -1)
  t.not(codeSlot(486), codeSlot(487))
  t.equal(codeSlot(499), codeSlot(498), 'unknown 4xx codes share the 4xx "other" slot')
  t.not(codeSlot(499), codeSlot(599))
})
