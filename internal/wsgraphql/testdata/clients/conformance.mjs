// Drives one case of TestConformance with a reference client library and prints what the
// client saw as one JSON line: the close code and reason on the wire, a refused
// handshake's error, the message types received, and what the library reported.
//
//   node conformance.mjs CASE PROTOCOL URL ORIGIN
//
// PROTOCOL is graphql-transport-ws (the graphql-ws library) or graphql-ws
// (subscriptions-transport-ws, the legacy protocol's reference client).
import WebSocket from 'ws';
import { createClient } from 'graphql-ws';
import stws from 'subscriptions-transport-ws';

const [testCase, protocol, url, origin] = process.argv.slice(2);
const result = { received: [], library: [] };
let finished = false;

function finish() {
  if (finished) return;
  finished = true;
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(0);
}
// The Go test bounds the run too; this only makes sure a hung case still reports.
setTimeout(() => { result.timedOut = true; finish(); }, 15000);

// Probe is the ws WebSocket both libraries are given: it sends the test's Origin and
// records what happens on the wire, which the libraries do not all expose.
class Probe extends WebSocket {
  constructor(address, protocols) {
    super(address, protocols, { origin });
    this.on('message', (data) => {
      try { result.received.push(JSON.parse(data.toString()).type); } catch { result.received.push('?'); }
    });
    this.on('error', (err) => { result.handshakeError ??= err.message; });
    // The first connection's close is the server's doing; graphql-ws may then reconnect.
    this.on('close', (code, reason) => {
      if (result.closeCode !== undefined) return;
      result.closeCode = code;
      result.closeReason = reason.toString();
      // Let the library see the close before the report.
      setImmediate(finish);
    });
  }
}

const token = testCase === 'forbidden' ? 'bad' : 'good';
const params = { Authorization: 'Bearer ' + token };
const ticks = { query: 'subscription { ticks }' };
const bigQuery = { query: 'subscription { ticks }' + ' '.repeat(128 << 10) };

// next is called with each result; the allowed-origin case ends at the first one.
function onNext(data) {
  result.library.push('next:' + JSON.stringify(data.data));
  if (testCase === 'origin-allowed') finish();
}

if (protocol === 'graphql-transport-ws') {
  const client = createClient({
    url,
    webSocketImpl: Probe,
    retryAttempts: 0,
    lazy: true,
    keepAlive: 0,
    // A client that never answers the server's pings.
    disablePong: testCase === 'ping-drop',
    // A client that never sends connection_init.
    connectionParams: testCase === 'init-timeout' ? () => new Promise(() => {}) : params,
    // Every operation under one id.
    generateID: testCase === 'duplicate-id' ? () => 'dup' : undefined,
    on: {
      closed: (e) => result.library.push('closed:' + (e && e.code)),
      ping: (received) => { if (received) result.library.push('ping'); },
    },
  });
  const sink = {
    next: onNext,
    error: (e) => result.library.push('error:' + (e && (e.code ?? e.message ?? JSON.stringify(e)))),
    complete: () => result.library.push('complete'),
  };
  client.subscribe(testCase === 'oversized' ? bigQuery : ticks, sink);
  if (testCase === 'duplicate-id') client.subscribe(ticks, sink);
} else {
  const client = new stws.SubscriptionClient(url, {
    reconnect: false,
    lazy: false,
    // A client that never sends connection_init: its params never resolve.
    connectionParams: testCase === 'init-timeout' ? () => new Promise(() => {}) : params,
    connectionCallback: (err) => { if (err) result.library.push('connection_error:' + (err.message ?? JSON.stringify(err))); },
  }, Probe, 'graphql-ws');
  if (testCase === 'duplicate-id') client.generateOperationId = () => 'dup';
  client.onDisconnected(() => result.library.push('disconnected'));
  const sink = {
    next: onNext,
    error: (e) => result.library.push('error:' + JSON.stringify(e)),
    complete: () => result.library.push('complete'),
  };
  client.request(testCase === 'oversized' ? bigQuery : ticks).subscribe(sink);
  if (testCase === 'duplicate-id') client.request(ticks).subscribe(sink);
}
