// The GraphQL client: queries and mutations over HTTP, subscriptions over one WebSocket
// (graphql-ws). Both carry the signed-in end user's token; the gateway derives who they are
// from it, so nothing else identifies the user.

import type { DocumentNode, Kind } from 'graphql';
import { createClient as createWSClient, type Client as WSClient } from 'graphql-ws';
import { Client, cacheExchange, fetchExchange, makeOperation, mapExchange, subscriptionExchange } from 'urql';
import { graphqlHTTPURL, graphqlWSURL } from './config';

/**
 * Built with `npm run build:trusted`: the gateway runs only the documents of this build's
 * manifest (src/gql/persisted-documents.json, its TRUSTED_DOCUMENTS), so each operation is
 * sent by its documentId, over HTTP and over the WebSocket alike, and its text never is.
 */
const TRUSTED_DOCUMENTS = import.meta.env.VITE_TRUSTED_DOCUMENTS === 'true';

/**
 * The document urql sends for a trusted one: no definitions, only the documentId
 * (graphql-codegen put its hash on the document as __meta__.hash). urql's fetch body then
 * carries `documentId` instead of `query`, and so does the WebSocket's subscribe payload.
 */
function byDocumentId(query: DocumentNode): DocumentNode {
  const hash = (query as { __meta__?: { hash?: string } }).__meta__?.hash;
  if (!hash) throw new Error('a document without a hash: run graphql-codegen (npm run codegen)');
  return { kind: 'Document' as Kind.DOCUMENT, definitions: [], documentId: hash } as DocumentNode;
}

/** Swaps each operation's text for its documentId, after the cache has read the text. */
const documentIdExchange = mapExchange({
  onOperation: (operation) =>
    operation.kind === 'teardown'
      ? operation
      : makeOperation(operation.kind, { ...operation, query: byDocumentId(operation.query) }),
});

/**
 * Whether the WebSocket that carries the live updates is up. "refused" is final: the
 * gateway turned the token down, and only a new sign-in helps.
 */
export type LiveState = 'connecting' | 'live' | 'reconnecting' | 'closed' | 'refused';

export interface GatewayClient {
  client: Client;
  /** Closes the WebSocket; the client must not be used afterwards. */
  dispose: () => void;
}

export interface GatewayClientOptions {
  gateway: string;
  token: string;
  /** Told whenever the WebSocket's state changes. */
  onLiveState: (state: LiveState) => void;
  /**
   * Called when the WebSocket is back after a drop: events sent while it was down are lost,
   * so anything built from them should be fetched again.
   */
  onReconnected: () => void;
}

/** The close code graphql-ws servers use when they reject connection_init. */
export const FORBIDDEN = 4403;

/** How many times in a row the gateway may close the socket at connection_init. */
const MAX_REFUSALS = 3;

export function isCloseEvent(v: unknown): v is { code: number; reason: string } {
  return typeof v === 'object' && v !== null && 'code' in v && typeof v.code === 'number';
}

export function createGatewayClient(opts: GatewayClientOptions): GatewayClient {
  const authorization = `Bearer ${opts.token}`;
  let everConnected = false;
  let acknowledged = false; // the current socket got connection_ack
  let refusals = 0;

  const ws: WSClient = createWSClient({
    url: graphqlWSURL(opts.gateway),
    // Sent in connection_init: browsers cannot set headers on a WebSocket.
    connectionParams: { Authorization: authorization },
    // Ride out network drops and gateway restarts (graphql-ws backs off at random), but not
    // a rejected token: the gateway closes with 4403 then, and retrying cannot fix that.
    retryAttempts: 8,
    shouldRetry: (closed) => isCloseEvent(closed) && closed.code !== FORBIDDEN,
    on: {
      connecting: () => {
        acknowledged = false;
        opts.onLiveState(everConnected ? 'reconnecting' : 'connecting');
      },
      connected: (_socket, _payload, wasRetry) => {
        acknowledged = true;
        refusals = 0;
        opts.onLiveState('live');
        if (everConnected || wasRetry) opts.onReconnected();
        everConnected = true;
      },
      closed: (event) => {
        // Some servers refuse connection_init by closing with 1000 (Normal Closure), after
        // which graphql-ws reconnects at once, without backing off, for as long as any
        // subscription is open. Stop after a few such refusals instead of spinning.
        const refused = !acknowledged && isCloseEvent(event) && (event.code === 1000 || event.code === FORBIDDEN);
        if (refused && ++refusals >= MAX_REFUSALS) {
          opts.onLiveState('refused');
          void ws.dispose();
          return;
        }
        opts.onLiveState('closed');
      },
    },
  });

  const client = new Client({
    url: graphqlHTTPURL(opts.gateway),
    // POST for everything: one CORS preflight shape, and no query text in URLs or logs.
    preferGetMethod: false,
    fetchOptions: () => ({ headers: { Authorization: authorization } }),
    exchanges: [
      cacheExchange,
      ...(TRUSTED_DOCUMENTS ? [documentIdExchange] : []),
      fetchExchange,
      subscriptionExchange({
        forwardSubscription(request) {
          // A trusted build sends documentId (the gateway reads it as over HTTP) and no text.
          const input = { ...request, query: request.query ?? '' };
          return {
            subscribe(sink) {
              const unsubscribe = ws.subscribe(input, sink);
              return { unsubscribe };
            },
          };
        },
      }),
    ],
  });

  return { client, dispose: () => void ws.dispose() };
}
