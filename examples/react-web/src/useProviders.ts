// The providers the gateway says Terra offers, and how to name one for a person.

import { useCallback, useMemo } from 'react';
import { useQuery, type CombinedError } from 'urql';
import { ProvidersQuery, type Provider } from './operations';

export interface Providers {
  /** Providers that connect through the widget (not the mobile-SDK-only ones), by name. */
  widget: Provider[];
  fetching: boolean;
  error: CombinedError | undefined;
  /** "Oura" for "OURA"; a readable guess when the gateway did not say. */
  displayName: (name: string) => string;
}

export function useProviders(): Providers {
  // The list hardly ever changes: the cache may answer it.
  const [{ data, fetching, error }] = useQuery({ query: ProvidersQuery, requestPolicy: 'cache-first' });

  const byName = useMemo(() => new Map((data?.providers ?? []).map((p) => [p.name, p])), [data]);
  const widget = useMemo(
    () => (data?.providers ?? []).filter((p) => !p.sdkOnly).sort((a, b) => a.displayName.localeCompare(b.displayName)),
    [data],
  );
  const displayName = useCallback((name: string) => byName.get(name)?.displayName ?? readable(name), [byName]);

  return { widget, fetching, error, displayName };
}

/** Joins names for a sentence: "Oura", "Oura and Garmin", "Oura, Garmin and Polar". */
export function listOf(names: string[]): string {
  if (names.length <= 1) return names[0] ?? '';
  return `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}`;
}

function readable(name: string): string {
  return name
    .toLowerCase()
    .split(/[_\s]+/)
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join(' ');
}
