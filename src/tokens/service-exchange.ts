// Token exchange (RFC 7523 jwt-bearer style): a verified service assertion
// becomes a short-lived Tessera access token for that principal (kind
// SERVICE, or USER for a user's own key), carrying the elected permissions of
// its capability's group; no refresh token. For a capability of this
// server's own registry the token's session is the capability itself (its
// id is the `sid`): revoking the capability or deactivating its region
// refuses the token at once. For an outside registry a session row is
// stored, living as long as the token.
import { randomUUID } from "node:crypto";
import { entityManagerOf, type EntityManagerSource } from "../db/entity-manager-source.ts";
import { invalidInput, unauthenticated } from "../errors.ts";
import { intersectPatterns } from "../permissions/index.ts";
import type { AccessTokenSigner, TokenSet } from "./access-token-signer.ts";
import { B64URL } from "./jwt.ts";
import { electPermissions } from "./password-login.ts";
import type { Principal } from "./principal.ts";
import { SessionEntity } from "./token.entity.ts";

/** What the registry's assertion verifier establishes (src/registry VerifiedAssertion). */
export interface AssertedPrincipal {
  kind: "user" | "service";
  subject: string;
  regionId: string;
  capability: string;
  registry: string;
  tenantId: string;
  tenantName: string;
  username: string;
  granted: string[];
  capabilityId?: string;
  expiresAt: Date;
  regionExpiresAt: Date;
  audience: string[];
}

export interface AssertionChecker {
  readonly enabled: boolean;
  verify(em: EntityManagerSource, token: string, audience: string): Promise<AssertedPrincipal>;
}

export interface ExchangeSettings {
  issuer: string;
  audience: string;
  /** Lifetime of an exchanged token (never past the capability's or the assertion's registry entry's expiry). */
  serviceTokenTtlSeconds: number;
}

export class ServiceExchange {
  readonly #signer: AccessTokenSigner;
  readonly #checker: AssertionChecker;
  readonly #settings: ExchangeSettings;

  constructor(signer: AccessTokenSigner, checker: AssertionChecker, settings: ExchangeSettings) {
    this.#signer = signer;
    this.#checker = checker;
    this.#settings = settings;
  }

  get enabled(): boolean {
    return this.#checker.enabled;
  }

  /** IssueToken with `service_assertion`: the assertion's audience must be this server's issuer. */
  async exchange(source: EntityManagerSource, input: { assertion: string; requested: string[]; audience: string; peer: string }): Promise<TokenSet> {
    const asserted = await this.#checker.verify(source, input.assertion, this.#settings.issuer);
    const elected = electPermissions(asserted.granted, input.requested);
    const nowMs = Date.now();
    const until = Math.min(asserted.regionExpiresAt.getTime(), nowMs + this.#settings.serviceTokenTtlSeconds * 1000);
    const ttlSeconds = Math.floor((until - nowMs) / 1000);
    if (ttlSeconds < 1) throw unauthenticated("TOKEN_EXPIRED", "the capability expires now");
    const audience = input.audience || this.#settings.audience;
    let sid = asserted.capabilityId;
    if (!sid) {
      sid = randomUUID();
      const expiresAt = new Date(nowMs + ttlSeconds * 1000);
      const em = entityManagerOf(source);
      em.create(SessionEntity, {
        id: sid,
        tenant: asserted.tenantId,
        user: null,
        kind: "service",
        subject: asserted.subject,
        elected,
        audience,
        clientAddress: input.peer.slice(0, 128),
        upnSubject: null,
        expiresAt,
        absoluteExpiresAt: expiresAt,
        revokedAt: null,
        revokeReason: null,
      });
      await em.flush();
    }
    const signed = await this.#signer.signOffloaded({
      sub: asserted.subject,
      tid: asserted.tenantId,
      tenantName: asserted.tenantName,
      sid,
      elected,
      audience,
      kind: asserted.kind,
      username: asserted.username,
      ttlSeconds,
      region: { id: asserted.regionId, capability: asserted.capability, registry: asserted.registry, expiresAt: asserted.regionExpiresAt },
    });
    return { ...signed, refreshToken: "", sessionId: sid, granted: elected, kind: asserted.kind };
  }

  /**
   * VerifyToken (or Gate-Keeper) of a bare assertion: the principal it proves (its jti is used up).
   * An assertion names its receiver, which must say who it is (`audience`): were a default
   * audience enough, one receiver could spend an assertion meant for another. And an assertion
   * meant for token exchange (`aud` this server's issuer) is never verified here, so that no
   * receiver can pass for this server.
   */
  async principal(em: EntityManagerSource, token: string, audience: string): Promise<Principal> {
    if (!audience) {
      throw invalidInput([{ field: "audience", description: "a service assertion names its receiver: pass the audience you verify it for" }]);
    }
    if (audience === this.#settings.issuer || unverifiedAudiences(token).includes(this.#settings.issuer)) {
      throw unauthenticated("TOKEN_INVALID", "an assertion for this server's issuer is for token exchange (IssueToken), not for verification");
    }
    const a = await this.#checker.verify(em, token, audience);
    return {
      kind: a.kind,
      subject: a.subject,
      tenantId: a.tenantId,
      tenantName: a.tenantName,
      sessionId: "",
      username: a.username,
      upn: `${a.subject}@${a.tenantName}`,
      permissions: intersectPatterns(a.granted, a.granted),
      elected: a.granted,
      expiresAt: a.expiresAt,
      audience: a.audience,
      token,
      region: { id: a.regionId, capability: a.capability, registry: a.registry, expiresAt: a.regionExpiresAt },
    };
  }
}

/**
 * What looksLikeAssertion decided for a header segment it has seen: the
 * headers in use are few (one per signing key and per capability key), so
 * VerifyToken of an access token does not parse its header again. Bounded
 * (at most 1024 segments of at most 256 characters: ~0.3 MB whatever callers
 * send); past that, a header is parsed each time and not kept.
 */
const headerKinds = new Map<string, boolean>();
const HEADER_KINDS_MAX = 1024;
const HEADER_KEPT_LENGTH = 256;

/** Does this token look like a service assertion rather than a Tessera access token? (Nothing trusted: a routing decision.) */
export function looksLikeAssertion(token: string): boolean {
  const dot = token.indexOf(".");
  if (dot <= 0 || dot > 2048) return false;
  const segment = token.slice(0, dot);
  const known = headerKinds.get(segment);
  if (known !== undefined) return known;
  let assertion = false;
  try {
    const header = JSON.parse(Buffer.from(segment, "base64url").toString("utf8")) as { typ?: unknown } | null;
    assertion = !!header && typeof header === "object" && header.typ !== "at+jwt";
  } catch {
    // Not JSON: not an assertion either.
  }
  if (segment.length <= HEADER_KEPT_LENGTH && headerKinds.size < HEADER_KINDS_MAX && B64URL.test(segment)) {
    // A copy of its own as the key: the slice is a view of the whole token (V8 keeps sliced
    // strings' parents alive), and a kept slice would keep every token that added an entry.
    headerKinds.set(Buffer.from(segment, "latin1").toString("latin1"), assertion);
  }
  return assertion;
}

/** The `aud` an assertion claims, before anything is verified (only to refuse it early). */
function unverifiedAudiences(token: string): string[] {
  try {
    const payload = JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString("utf8")) as { aud?: unknown } | null;
    const aud = payload?.aud;
    return typeof aud === "string" ? [aud] : Array.isArray(aud) ? aud.filter((a): a is string => typeof a === "string") : [];
  } catch {
    return [];
  }
}
