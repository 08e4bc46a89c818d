/**
 * The browser page's parts (`--ui`, on by default): the mode's catalog, and session cookies sealed
 * with the keys the mode's replicas share (kubernetes mode: the signing keys' Secret), or with a key
 * made at start where there is one process (local mode: a restart ends the sessions).
 */
import type { Config } from '../config/config.ts';
import type { AppDeps } from '../server/app.ts';
import { SessionCodec, processKeyRing } from '../server/ui/session.ts';
import type { Mode, ModeServices } from './mode.ts';

export function browserPage(config: Config, mode: Mode, services: ModeServices): AppDeps['ui'] {
  if (!config.ui) return undefined;
  return {
    catalog: mode.parts.catalog,
    sessions: new SessionCodec(services.sessionKeys ?? processKeyRing()),
    sessionMaxAgeMs: config.sessionMaxAgeMs,
    mode: mode.name,
  };
}
