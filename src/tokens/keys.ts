// Signing keys: Ed25519 in the database, private halves sealed under the
// master key. Rotation publishes the next key first (it appears in the JWKS at
// once) and lets it sign only after `publishLeadSeconds`, so verifiers that
// cache the JWKS learn it before they meet it; a retired key stays published
// until every token it signed has expired.
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from "node:crypto";
import type { EntityManager } from "@mikro-orm/core";
import { SigningKeyEntity, type SigningKey } from "./token.entity.ts";
import { open, seal } from "./master-key.ts";

export interface PublicJwk {
  kid: string;
  kty: string;
  crv: string;
  x: string;
  alg: string;
  use: string;
}

interface LoadedKey {
  kid: string;
  jwk: PublicJwk;
  publicKey: KeyObject;
  activatesAt: Date;
  retiredAt: Date | null;
  expiresAt: Date | null;
}

export interface KeyStoreOptions {
  masterKey: Buffer;
  /** Longest lifetime of a token signed by a key: how long it stays published after retiring. */
  accessTokenTtlSeconds: number;
  publishLeadSeconds: number;
  /** Called when the key set changes (for the revocation feed). */
  onKeyEvent?: (em: EntityManager, kind: "KEY_ADDED" | "KEY_RETIRED", kid: string) => Promise<void>;
}

const sealContext = (kid: string) => `tessera signing key ${kid}`;

/** The transaction-scoped advisory lock that serialises key creation across replicas. */
const KEY_ROTATION_LOCK = 7_358_202_613;

async function lockKeyRotation(tem: EntityManager): Promise<void> {
  await tem.getConnection().execute("select pg_advisory_xact_lock(?)", [KEY_ROTATION_LOCK], "run", tem.getTransactionContext());
}

export class KeyStore {
  readonly #options: KeyStoreOptions;
  #keys = new Map<string, LoadedKey>();
  #signers = new Map<string, KeyObject>();
  #lastReload = 0;

  constructor(options: KeyStoreOptions) {
    this.#options = options;
  }

  /** Loads the published keys; creates the first signing key on a fresh database (one, however many replicas start at once). */
  async init(em: EntityManager): Promise<void> {
    await this.reload(em);
    if (![...this.#keys.values()].some((k) => !k.retiredAt)) {
      await em.transactional(async (tem) => {
        await lockKeyRotation(tem);
        if ((await tem.count(SigningKeyEntity, { retiredAt: null })) === 0) await this.#createKey(tem, new Date());
      });
      await this.reload(em);
    }
  }

  /**
   * The scheduled rotation: rotates when the newest key (in the database, not
   * this replica's view of it) is at least `intervalSeconds` old, under a
   * lock, so that replicas whose schedules fire together make one key.
   * Returns whether this call rotated.
   */
  async rotateIfDue(em: EntityManager, intervalSeconds: number): Promise<boolean> {
    const rotated = await em.transactional(async (tem) => {
      await lockKeyRotation(tem);
      const [newest] = await tem.find(SigningKeyEntity, {}, { orderBy: { activatesAt: "desc" }, fields: ["activatesAt"], limit: 1 });
      if (newest && Date.now() - newest.activatesAt.getTime() < intervalSeconds * 1000) return false;
      await this.#rotateIn(tem, {});
      return true;
    });
    await this.reload(em);
    return rotated;
  }

  async reload(em: EntityManager): Promise<void> {
    const now = new Date();
    const rows = await em.fork().find(
      SigningKeyEntity,
      { $or: [{ expiresAt: null }, { expiresAt: { $gt: now } }] },
      { orderBy: { activatesAt: "asc" }, populate: ["privateKeyEncrypted"] },
    );
    const keys = new Map<string, LoadedKey>();
    for (const row of rows) {
      keys.set(row.kid, {
        kid: row.kid,
        jwk: row.publicJwk as unknown as PublicJwk,
        publicKey: createPublicKey({ key: row.publicJwk, format: "jwk" }),
        activatesAt: row.activatesAt,
        retiredAt: row.retiredAt ?? null,
        expiresAt: row.expiresAt ?? null,
      });
      if (!this.#signers.has(row.kid) && !row.retiredAt) {
        const der = open(this.#options.masterKey, (row as SigningKey).privateKeyEncrypted, sealContext(row.kid));
        this.#signers.set(row.kid, createPrivateKey({ key: der, format: "der", type: "pkcs8" }));
      }
    }
    this.#keys = keys;
    this.#lastReload = Date.now();
  }

  async #createKey(em: EntityManager, activatesAt: Date): Promise<SigningKey> {
    const { publicKey, privateKey } = generateKeyPairSync("ed25519");
    const kid = randomBytes(12).toString("base64url");
    const jwk = publicKey.export({ format: "jwk" }) as { kty: string; crv: string; x: string };
    const der = privateKey.export({ format: "der", type: "pkcs8" });
    const key = em.create(SigningKeyEntity, {
      kid,
      algorithm: "EdDSA",
      publicJwk: { kid, kty: jwk.kty, crv: jwk.crv, x: jwk.x, alg: "EdDSA", use: "sig" },
      privateKeyEncrypted: seal(this.#options.masterKey, der, sealContext(kid)),
      activatesAt,
      retiredAt: null,
      expiresAt: null,
    });
    await em.flush();
    await this.#options.onKeyEvent?.(em, "KEY_ADDED", kid);
    return key;
  }

  /**
   * Publishes a new key now; it signs after the publication lead, when the
   * current one retires. `retireCurrentNow` (a compromised key): the new key
   * signs at once and every older key expires at once, so that its tokens are
   * refused and it leaves the JWKS.
   */
  async rotate(em: EntityManager, options: { retireCurrentNow?: boolean } = {}): Promise<{ kid: string; activatesAt: Date }> {
    const result = await em.transactional((tem) => this.#rotateIn(tem, options));
    await this.reload(em);
    return result;
  }

  async #rotateIn(tem: EntityManager, options: { retireCurrentNow?: boolean }): Promise<{ kid: string; activatesAt: Date }> {
    const now = Date.now();
    const activatesAt = new Date(options.retireCurrentNow ? now : now + this.#options.publishLeadSeconds * 1000);
    const key = await this.#createKey(tem, activatesAt);
    if (options.retireCurrentNow) {
      // Every key still accepted, also one an earlier rotation already retired (it stays
      // published until its tokens expire), leaves at once, and the log says so.
      const live = { kid: { $ne: key.kid }, $or: [{ expiresAt: null }, { expiresAt: { $gt: activatesAt } }] };
      const retiring = await tem.find(SigningKeyEntity, live, { fields: ["kid"] });
      await tem.nativeUpdate(SigningKeyEntity, { kid: { $ne: key.kid }, retiredAt: null }, { retiredAt: activatesAt });
      await tem.nativeUpdate(SigningKeyEntity, live, { expiresAt: activatesAt });
      for (const { kid } of retiring) await this.#options.onKeyEvent?.(tem, "KEY_RETIRED", kid);
    } else {
      const expiresAt = new Date(activatesAt.getTime() + (this.#options.accessTokenTtlSeconds + 60) * 1000);
      await tem.nativeUpdate(SigningKeyEntity, { kid: { $ne: key.kid }, retiredAt: null }, { retiredAt: activatesAt, expiresAt });
    }
    return { kid: key.kid, activatesAt };
  }

  /** The key that signs now: the newest one whose activation time has come. */
  signer(now = new Date()): { kid: string; privateKey: KeyObject } {
    let chosen: LoadedKey | undefined;
    for (const key of this.#keys.values()) {
      if (key.activatesAt <= now && this.#signers.has(key.kid) && (!chosen || key.activatesAt > chosen.activatesAt)) chosen = key;
    }
    if (!chosen) throw new Error("no active signing key");
    return { kid: chosen.kid, privateKey: this.#signers.get(chosen.kid)! };
  }

  /** The public key for `kid`; reloads (at most every 5 s) when another replica may have rotated. */
  async publicKey(em: EntityManager, kid: string): Promise<KeyObject | undefined> {
    const key = this.#keys.get(kid);
    if (key) return key.expiresAt && key.expiresAt <= new Date() ? undefined : key.publicKey;
    if (Date.now() - this.#lastReload > 5000) {
      await this.reload(em);
      return this.#keys.get(kid)?.publicKey;
    }
    return undefined;
  }

  cachedPublicKey(kid: string): KeyObject | undefined {
    const key = this.#keys.get(kid);
    return key && !(key.expiresAt && key.expiresAt <= new Date()) ? key.publicKey : undefined;
  }

  jwks(now = new Date()): PublicJwk[] {
    return [...this.#keys.values()].filter((k) => !k.expiresAt || k.expiresAt > now).map((k) => ({ ...k.jwk }));
  }

  /** Age of the newest key, for the rotation schedule. */
  newestKeyAgeSeconds(now = Date.now()): number {
    let newest = 0;
    for (const key of this.#keys.values()) newest = Math.max(newest, key.activatesAt.getTime());
    return (now - newest) / 1000;
  }
}
