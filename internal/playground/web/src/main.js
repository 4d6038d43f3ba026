// The playground page's only script. The page is served with a Content-Security-Policy that
// allows scripts from its own origin alone, so what differs per server (the endpoint, the
// pre-filled headers) comes in a JSON data block that this script reads, never as inline code.

import 'graphiql/style.css';
import '@graphiql/plugin-explorer/style.css';
import './page.css';

import { explorerPlugin } from '@graphiql/plugin-explorer';
import { createGraphiQLFetcher } from '@graphiql/toolkit';
import { GraphiQL } from 'graphiql';
import { createElement } from 'react';
import { createRoot } from 'react-dom/client';

const config = JSON.parse(document.getElementById('playground-config').textContent);

// The endpoint is a path on this origin; subscriptions take the same path over WebSocket.
const url = new URL(config.endpoint, location.href);
const subscriptionUrl = new URL(url);
subscriptionUrl.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';

// GraphiQL keeps tabs and history in localStorage; a prefix keeps them apart from other
// apps on the same origin, and clear() removes only ours.
function prefixedStorage(prefix) {
  const ours = () => Object.keys(localStorage).filter((k) => k.startsWith(prefix));
  return {
    getItem: (key) => localStorage.getItem(prefix + key),
    setItem: (key, value) => localStorage.setItem(prefix + key, value),
    removeItem: (key) => localStorage.removeItem(prefix + key),
    clear: () => ours().forEach((k) => localStorage.removeItem(k)),
    key: (i) => ours()[i]?.slice(prefix.length) ?? null,
    get length() {
      return ours().length;
    },
  };
}

const headers = config.headers && Object.keys(config.headers).length > 0 ? JSON.stringify(config.headers, null, 2) : undefined;

createRoot(document.getElementById('graphiql')).render(
  createElement(GraphiQL, {
    fetcher: createGraphiQLFetcher({ url: url.href, subscriptionUrl: subscriptionUrl.href }),
    plugins: [explorerPlugin()],
    headers,
    isHeadersEditorEnabled: true,
    // Headers hold bearer tokens: they stay in the page, not in localStorage.
    shouldPersistHeaders: false,
    storage: prefixedStorage(config.storagePrefix),
    inputValueDeprecation: true,
  }),
);
