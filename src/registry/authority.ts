// The registry authority's key: an Ed25519 key in the database whose private
// half is sealed under the master key (as the token signing keys are). It
// signs every region and capability record; verifiers pin its public half in
// their allow-list. Rotation makes a new key sign at once (records are signed
// when the document is built); verifiers pin the new key beside the old one
// before the rotation (the document names the current key).
import { createPrivateKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import type { EntityManager } from "@mikro-orm/core";
import { open, seal } from "../tokens/master-key.ts";
import { readPublicKey, type VerifyKey } from "./jws.ts";
import { RegistryAuthorityKeyEntity, type RegistryAuthorityKey } from "./registry.entity.ts";

const sealContext = (kid: string) => `tessera registry authority key ${kid}`;

export interface AuthoritySigner {
  kid: string;
  privateKey: KeyObject;
  publicKey: VerifyKey;
}

export class AuthorityKeys {
  readonly #masterKey: Buffer;
  #current: AuthoritySigner | undefined;

  constructor(masterKey: Buffer) {
    this.#masterKey = masterKey;
  }

  /** The key that signs now (loaded, or created on a fresh database). */
  async current(em: EntityManager): Promise<AuthoritySigner> {
    return (this.#current ??= await this.#load(em));
  }

  /** Forget the loaded key (another replica rotated). */
  forget(): void {
    this.#current = undefined;
  }

  async #load(em: EntityManager): Promise<AuthoritySigner> {
    // Two replicas starting on a fresh database may each create one: the oldest live key signs on every
    // replica (read again after creating), so they agree once both have committed.
    const oldest = () =>
      em.fork().findOne(RegistryAuthorityKeyEntity, { retiredAt: null }, { orderBy: { createdAt: "asc", kid: "asc" }, populate: ["privateKeyEncrypted"] });
    let row = await oldest();
    if (!row) {
      await this.#create(em.fork());
      row = await oldest();
    }
    return this.#signer(row!);
  }

  #signer(row: RegistryAuthorityKey): AuthoritySigner {
    const der = open(this.#masterKey, row.privateKeyEncrypted, sealContext(row.kid));
    const read = readPublicKey(row.publicJwk);
    if ("problem" in read) throw new Error(`registry authority key ${row.kid} ${read.problem}`);
    return { kid: row.kid, privateKey: createPrivateKey({ key: der, format: "der", type: "pkcs8" }), publicKey: read.key };
  }

  async #create(em: EntityManager): Promise<RegistryAuthorityKey> {
    const { publicKey, privateKey } = generateKeyPairSync("ed25519");
    const read = readPublicKey(publicKey.export({ format: "jwk" }) as Record<string, unknown>);
    if ("problem" in read) throw new Error(read.problem);
    const kid = read.key.kid;
    const row = em.create(RegistryAuthorityKeyEntity, {
      kid,
      publicJwk: read.key.jwk,
      privateKeyEncrypted: seal(this.#masterKey, privateKey.export({ format: "der", type: "pkcs8" }), sealContext(kid)),
      retiredAt: null,
    });
    await em.flush();
    return row;
  }

  /** A new authority key signs from now on; the older ones retire. Returns the new key's public JWK. */
  async rotate(em: EntityManager): Promise<AuthoritySigner> {
    const signer = await em.transactional(async (tem) => {
      await tem.nativeUpdate(RegistryAuthorityKeyEntity, { retiredAt: null }, { retiredAt: new Date() });
      return this.#signer(await this.#create(tem));
    });
    this.#current = signer;
    return signer;
  }
}

