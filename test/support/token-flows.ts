// The token flows wired as createTokens wires them (src/tokens/index.ts), over
// a unit-test database (unit-db.ts): the real KeyStore, SessionStore,
// SessionCache and AccessTokenSigner, the RefreshRotation and
// TokenVerification under test, and a login that starts a session exactly as
// PasswordLogin does once the password is checked (sign, then
// SessionStore.start), without argon2.
import { afterAll, afterEach, beforeAll, vi } from "vitest";
import { AccessTokenSigner, type TokenSettings } from "../../src/tokens/access-token-signer.ts";
import { KeyStore } from "../../src/tokens/keys.ts";
import { RefreshRotation, type RefreshSettings } from "../../src/tokens/refresh-rotation.ts";
import { SessionCache } from "../../src/tokens/session-cache.ts";
import { hashRefreshToken, SessionStore } from "../../src/tokens/session-store.ts";
import { RefreshTokenEntity, SessionEntity } from "../../src/tokens/token.entity.ts";
import { TokenVerification } from "../../src/tokens/verification.ts";
import { openUnitDatabase, type Account, type UnitDatabase } from "./unit-db.ts";

export const SETTINGS: RefreshSettings = {
  // Strict rotation unless a test asks for the grace window.
  refreshGraceSeconds: 0,
  issuer: "https://tessera.test",
  audience: "tessera",
  accessTokenTtlSeconds: 300,
  refreshTokenTtlSeconds: 3600,
  refreshTokenAbsoluteTtlSeconds: 86_400,
};

/** One master key for every KeyStore of a test file: they share the database's signing keys. */
export const MASTER_KEY = Buffer.alloc(32, 7);

export interface Login {
  sessionId: string;
  accessToken: string;
  expiresAt: Date;
  refreshToken: string;
  refreshExpiresAt: Date;
}

export type TokenFlows = Awaited<ReturnType<typeof tokenFlows>>;

export async function tokenFlows(db: UnitDatabase, settings: RefreshSettings = SETTINGS) {
  const keys = new KeyStore({ masterKey: MASTER_KEY, accessTokenTtlSeconds: settings.accessTokenTtlSeconds, publishLeadSeconds: 0 });
  await keys.init(db.em());
  const signer = new AccessTokenSigner(keys, settings);
  const sessions = new SessionStore(settings);
  const cache = new SessionCache();
  return {
    keys,
    signer,
    sessions,
    cache,
    rotation: new RefreshRotation(signer, settings, MASTER_KEY),
    verification: new TokenVerification(keys, cache, settings),
    /** A password login's session for `account`, electing `elected`. */
    async login(account: Account, elected: string[], options: { audience?: string; upnSubject?: string } = {}): Promise<Login> {
      const sessionId = crypto.randomUUID();
      const audience = options.audience ?? settings.audience;
      const access = signer.sign({ sub: account.userId, tid: account.tenantId, tenantName: account.tenantName, sid: sessionId, elected, audience, kind: "user", username: account.username, upnSubject: options.upnSubject });
      const session = await sessions.start(db.em(), {
        sessionId,
        tenantId: account.tenantId,
        user: { id: account.userId, username: account.username },
        passwordHash: account.passwordHash,
        upnSubject: options.upnSubject,
        elected,
        audience,
        peer: "192.0.2.1",
      });
      return { sessionId, ...access, ...session };
    },
  };
}

/** The session's row as the database has it now. */
export async function sessionRow(db: UnitDatabase, sessionId: string) {
  return db.em().findOneOrFail(SessionEntity, { id: sessionId });
}

/** The refresh token's row (by its hash) as the database has it now. */
export async function refreshTokenRow(db: UnitDatabase, refreshToken: string) {
  return db.em().findOne(RefreshTokenEntity, { hash: hashRefreshToken(refreshToken) });
}

/** Freezes Date (only Date: timers, and the database, keep running) at `at`; undone by vi.useRealTimers(). */
/**
 * The database of a test file of the flows: opened before its tests (with
 * the first signing key, made before any test moves the clock), closed after
 * them; the real clock is put back after each test (freezeClock).
 */
export function useFlowDatabase(): UnitDatabase {
  let db: UnitDatabase | undefined;
  beforeAll(async () => {
    db = await openUnitDatabase();
    await tokenFlows(db);
  });
  afterAll(() => db?.close());
  afterEach(() => {
    vi.useRealTimers();
  });
  const opened = () => {
    if (!db) throw new Error("the flow database is opened in beforeAll");
    return db;
  };
  return {
    get orm() {
      return opened().orm;
    },
    em: () => opened().em(),
    close: () => opened().close(),
  };
}

export function freezeClock(at: number | Date = Date.now()): number {
  vi.useFakeTimers({ toFake: ["Date"] });
  vi.setSystemTime(at);
  return new Date(at).getTime();
}
