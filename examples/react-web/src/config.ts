// Where the gateway is, decided once when the page loads.

const DEFAULT_GATEWAY = 'http://localhost:8080';

/** The query parameter that marks the page the widget sends the browser back to. */
export const RETURNED_PARAM = 'returned';

/**
 * The gateway's base URL: the `gateway` query parameter, else VITE_GATEWAY_URL from the
 * build, else the demo's default. Only http and https URLs are accepted.
 */
export function gatewayURL(search: string = window.location.search): string {
  const candidates = [new URLSearchParams(search).get('gateway'), import.meta.env.VITE_GATEWAY_URL];
  for (const raw of candidates) {
    const url = parseHTTPURL(raw);
    if (url) return url;
  }
  return DEFAULT_GATEWAY;
}

/** GraphQL over HTTP: queries and mutations. */
export function graphqlHTTPURL(gateway: string): string {
  return `${gateway}/graphql`;
}

/** GraphQL over WebSocket (the graphql-ws protocol): subscriptions. */
export function graphqlWSURL(gateway: string): string {
  return graphqlHTTPURL(gateway).replace(/^http/, 'ws');
}

/**
 * Where the widget sends the browser when the user is done, successful or not. It must be
 * listed in the gateway's ALLOWED_REDIRECT_URLS. The page it shows only says "you can close
 * this tab": the app learns the outcome from its subscriptions, not from this URL.
 */
export function returnURL(origin: string = window.location.origin): string {
  return `${origin}/?${RETURNED_PARAM}=1`;
}

function parseHTTPURL(raw: string | null | undefined): string | null {
  if (!raw) return null;
  try {
    const url = new URL(raw);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
    return (url.origin + url.pathname).replace(/\/+$/, '');
  } catch {
    return null;
  }
}
