/// <reference types="vite/client" />

interface ImportMetaEnv {
  /** The gateway's base URL, used when the page has no `gateway` query parameter. */
  readonly VITE_GATEWAY_URL?: string;
}

interface ImportMeta {
  readonly env: ImportMetaEnv;
}
