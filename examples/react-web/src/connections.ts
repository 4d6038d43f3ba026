// The end user's connection list, built from a snapshot (connectedUsers) and kept current
// by events (connectionEvents) and mutation answers (disconnectUser). Pure functions, so the
// rules are easy to read and to test.
//
// The rules:
// - A record only ever replaces an older one of the same userId (compared on updatedAt):
//   events may arrive after a snapshot that already includes them, or out of order.
// - DISCONNECTED and REVOKED remove the connection for good: Terra never revives a userId
//   (reconnecting issues a new one), so a late copy of it is ignored.
// - A snapshot is the truth for what it contains. Connections that only events told about
//   survive a snapshot only if they arrived after it was requested.

import type { ConnectionEventType, TerraUser } from './operations';

interface Entry {
  user: TerraUser;
  /** The event that put it here, counted from 1; 0 for a snapshot. */
  seq: number;
}

export interface ConnectionsState {
  entries: Record<string, Entry>;
  /** userId -> updatedAt (ms) of its removal. */
  removed: Record<string, number>;
  /** How many changes were applied: taken when a snapshot is requested. */
  seq: number;
  /** True once a snapshot has arrived. */
  loaded: boolean;
}

export type ConnectionsAction =
  | { type: 'snapshot'; users: TerraUser[]; requestedAtSeq: number }
  | { type: 'event'; event: ConnectionEventType; user: TerraUser }
  | { type: 'changed'; user: TerraUser };

export const initialConnections: ConnectionsState = { entries: {}, removed: {}, seq: 0, loaded: false };

export function reduceConnections(state: ConnectionsState, action: ConnectionsAction): ConnectionsState {
  switch (action.type) {
    case 'snapshot':
      return applySnapshot(state, action.users, action.requestedAtSeq);
    case 'event':
      return applyChange(state, action.user, action.event === 'DISCONNECTED' || action.event === 'REVOKED');
    case 'changed':
      return applyChange(state, action.user, false);
  }
}

/** The connections to show, oldest first. */
export function connectionList(state: ConnectionsState): TerraUser[] {
  return Object.values(state.entries)
    .map((e) => e.user)
    .sort((a, b) => time(a.connectedAt) - time(b.connectedAt) || a.provider.localeCompare(b.provider) || a.userId.localeCompare(b.userId));
}

function isGone(user: TerraUser): boolean {
  return !user.active || user.status === 'DISCONNECTED' || user.status === 'REVOKED';
}

function applyChange(state: ConnectionsState, user: TerraUser, removal: boolean): ConnectionsState {
  const at = time(user.updatedAt);
  const current = state.entries[user.userId];
  if (current && time(current.user.updatedAt) > at) return state; // a late, older copy
  const removedAt = state.removed[user.userId];
  const seq = state.seq + 1;

  if (removal || isGone(user)) {
    const { [user.userId]: _gone, ...entries } = state.entries;
    return { ...state, entries, removed: { ...state.removed, [user.userId]: Math.max(at, removedAt ?? at) }, seq };
  }
  if (removedAt !== undefined && removedAt >= at) return state; // never revived
  return { ...state, entries: { ...state.entries, [user.userId]: { user, seq } }, seq };
}

function applySnapshot(state: ConnectionsState, users: TerraUser[], requestedAtSeq: number): ConnectionsState {
  const entries: Record<string, Entry> = {};
  for (const user of users) {
    const removedAt = state.removed[user.userId];
    if (isGone(user) || (removedAt !== undefined && removedAt >= time(user.updatedAt))) continue;
    const current = state.entries[user.userId];
    entries[user.userId] =
      current && time(current.user.updatedAt) > time(user.updatedAt) ? current : { user, seq: 0 };
  }
  for (const [id, entry] of Object.entries(state.entries)) {
    if (!(id in entries) && entry.seq > requestedAtSeq) entries[id] = entry;
  }
  return { ...state, entries, loaded: true };
}

function time(iso: string): number {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? 0 : t;
}
