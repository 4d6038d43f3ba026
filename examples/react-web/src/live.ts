// What the rest of the app needs to know about the live-update WebSocket.

import { createContext, useContext } from 'react';
import type { LiveState } from './gateway';

export interface Live {
  state: LiveState;
  /** Counts reconnections after a drop: a change means events may have been missed. */
  reconnects: number;
}

export const LiveContext = createContext<Live>({ state: 'connecting', reconnects: 0 });

export function useLive(): Live {
  return useContext(LiveContext);
}
