// Verification state of live sessions, cached so that VerifyToken does not hit
// the database on every call. Entries are dropped the moment a revocation is
// committed locally and within one feed poll on other replicas; a short TTL
// bounds staleness should an event ever be missed.
import { inSpan } from "../observability/tracing.ts";
import type { EntityManager } from "@mikro-orm/core";
import { grantedPatterns } from "../permissions/index.ts";
import { SessionEntity } from "./token.entity.ts";
import type { RevocationEvent } from "../events/index.ts";

export interface SessionState {
  sessionId: string;
  kind: "user" | "service";
  subject: string;
  tenantId: string;
  tenantName: string;
  tenantDisabled: boolean;
  userId: string | null;
  username: string;
  userDisabled: boolean;
  revoked: boolean;
  expiresAt: Date;
  elected: string[];
  /** Patterns granted now through the user's groups. */
  granted: string[];
}

const TTL_MS = 30_000;
/**
 * A session read as missing is trusted for a second only. No honest token
 * names a missing session for long (sessions are purged a day after they
 * ended, their tokens expired long before), and a missing row is the one
 * answer a read can get wrong for a moment (a database switching over): a
 * live session must not be refused for half a minute because of it. The
 * second still spares the database a read per call from a token whose
 * session is gone.
 */
const MISSING_TTL_MS = 1_000;

function fresh(entry: { state: unknown; loadedAt: number }, now: number): boolean {
  return now - entry.loadedAt < (entry.state ? TTL_MS : MISSING_TTL_MS);
}
/** Default bound of the session cache (TESSERA_SESSION_CACHE). */
export const SESSION_CACHE_DEFAULT = 20_000;

/** Loads the state of a "session" that is not a sessions row (a registry capability's exchanged tokens). */
export type SessionFallback = (em: EntityManager, sessionId: string) => Promise<SessionState | null>;

export class SessionCache {
  readonly #fallback: SessionFallback | undefined;
  readonly #entries = new Map<string, { state: SessionState | null; loadedAt: number }>();
  readonly #loading = new Map<string, Promise<SessionState | null>>();

  readonly #trusted: () => boolean;
  readonly #max: number;

  /**
   * `trusted` says whether this process still hears of revocations (its feed
   * read the log lately): when it does not (the database is gone), cached
   * states are not used, so a session revoked elsewhere meanwhile is never
   * accepted from the cache; the database read that replaces it fails
   * (UNAVAILABLE) until the database is back.
   */
  constructor(fallback?: SessionFallback, trusted: () => boolean = () => true, maxEntries = SESSION_CACHE_DEFAULT) {
    this.#fallback = fallback;
    this.#trusted = trusted;
    this.#max = maxEntries;
  }

  /** How many session states are kept now. */
  get size(): number {
    return this.#entries.size;
  }

  /** The cached state when fresh, without touching the database (the verify fast path). */
  peek(sessionId: string): SessionState | null | undefined {
    const entry = this.#entries.get(sessionId);
    return entry && fresh(entry, Date.now()) && this.#trusted() ? entry.state : undefined;
  }

  async get(em: EntityManager, sessionId: string): Promise<SessionState | null> {
    const entry = this.#entries.get(sessionId);
    if (entry && fresh(entry, Date.now()) && this.#trusted()) return entry.state;
    let loading = this.#loading.get(sessionId);
    if (!loading) {
      loading = inSpan("tessera.session.load", { "tessera.session_id": sessionId }, () => this.#load(em, sessionId)).finally(() => this.#loading.delete(sessionId));
      this.#loading.set(sessionId, loading);
    }
    return loading;
  }

  async #load(em: EntityManager, sessionId: string): Promise<SessionState | null> {
    const generation = this.#generation;
    const session = await em.findOne(SessionEntity, { id: sessionId }, { populate: ["tenant", "user"] });
    const state: SessionState | null = !session
      ? ((await this.#fallback?.(em, sessionId)) ?? null)
      : {
          sessionId: session.id,
          kind: session.kind as SessionState["kind"],
          subject: session.subject,
          tenantId: session.tenant.id,
          tenantName: session.tenant.name,
          tenantDisabled: session.tenant.disabled,
          userId: session.user?.id ?? null,
          username: session.user?.username ?? "",
          userDisabled: session.user?.disabled ?? false,
          revoked: session.revokedAt != null,
          expiresAt: session.expiresAt,
          elected: session.elected,
          granted: session.user ? await grantedPatterns(em, session.user.id) : session.elected,
        };
    // A revocation that arrived while loading wins: do not cache what may be stale.
    if (generation === this.#generation) this.#remember(sessionId, state);
    return state;
  }

  /**
   * Keeps a loaded state at the back of the map (insertion order = load
   * order), after dropping from the front the entries past their TTL (never
   * used again) and, while full, the oldest.
   */
  #remember(sessionId: string, state: SessionState | null): void {
    const now = Date.now();
    this.#entries.delete(sessionId);
    for (const [oldest, entry] of this.#entries) {
      if (this.#entries.size < this.#max && fresh(entry, now)) break;
      this.#entries.delete(oldest);
    }
    if (this.#max > 0) this.#entries.set(sessionId, { state, loadedAt: now });
  }

  #generation = 0;

  /** Drops whatever an event may have changed. */
  apply(event: Pick<RevocationEvent, "kind" | "sessionId" | "userId" | "tenantId">): void {
    this.#generation++;
    // A load already running may have read the state before this event: later
    // callers must not join it (it still answers its own callers, which came first).
    this.#loading.clear();
    switch (event.kind) {
      case "SESSION_REVOKED": {
        if (!event.sessionId) return;
        // Marked, not dropped: a revoked session never comes back, so the next VerifyToken
        // refuses it from memory instead of reading it again (bench/RESULTS.md, replica fan-out).
        const entry = this.#entries.get(event.sessionId);
        if (entry?.state && !entry.state.revoked) this.#entries.set(event.sessionId, { state: { ...entry.state, revoked: true }, loadedAt: entry.loadedAt });
        else if (!entry?.state) this.#entries.delete(event.sessionId);
        return;
      }
      case "USER_REVOKED":
        this.#dropWhere((s) => s.userId === event.userId);
        return;
      case "TENANT_REVOKED":
        this.#dropWhere((s) => s.tenantId === event.tenantId);
        return;
      case "REGISTRY_CHANGED":
        this.#dropWhere((s) => s.kind === "service" || s.tenantId === event.tenantId);
        return;
      case "GRANTS_CHANGED":
        if (event.tenantId) this.#dropWhere((s) => s.tenantId === event.tenantId);
        else this.#entries.clear();
        return;
      default:
        return;
    }
  }

  #dropWhere(predicate: (state: SessionState) => boolean): void {
    for (const [id, entry] of this.#entries) if (!entry.state || predicate(entry.state)) this.#entries.delete(id);
  }
}
