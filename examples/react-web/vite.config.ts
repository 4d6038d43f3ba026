import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

// The dev server stays on 5173 (strictPort) because the gateway's CORS_ALLOWED_ORIGINS and
// ALLOWED_REDIRECT_URLS name that exact origin.
export default defineConfig({
  plugins: [react()],
  server: { port: 5173, strictPort: true },
  preview: { port: 4173, strictPort: true },
  build: { sourcemap: true },
});
