/// <reference types="vite/client" />

interface ImportMetaEnv {
  /** The gateway's base URL, used when the page has no `gateway` query parameter. */
  readonly VITE_GATEWAY_URL?: string;
  /**
   * "true" (`npm run build:trusted`, from .env.trusted): send each operation's documentId,
   * its hash in src/gql/persisted-documents.json, instead of its text, for a gateway that
   * runs only those documents (TRUSTED_DOCUMENTS).
   */
  readonly VITE_TRUSTED_DOCUMENTS?: string;
}

interface ImportMeta {
  readonly env: ImportMetaEnv;
}
