#!/usr/bin/env node
// `tessera`: a service's key pair and its publication, from the command line.
//   tessera key new <key file> [Ed25519|P-256|P-384|P-521]
//       writes the private key (PKCS#8 PEM, mode 600) and prints the public JWK
//   tessera key publish <key file> <region> <capability> [--expires <days>]
//       publishes the public half (RegistryService.PublishCapability) at
//       TESSERA_ADDRESS (default 127.0.0.1:50051) with the bearer token in
//       TESSERA_TOKEN (never on the command line); TESSERA_TLS=1 or
//       TESSERA_CA_FILE=<pem> for TLS
//   tessera key sign <key file> <region> <capability> <registry> <audience> [lifetime seconds]
//       prints a fresh single-use assertion (proveMyself)
import { readFileSync, writeFileSync } from "node:fs";
import { createTesseraClient } from "./client.ts";
import { TesseraClientError } from "./errors.ts";
import { generateServiceKey, proveMyself, serviceKeyOf, type ServiceKeyKind } from "./registry/service.ts";

const USAGE = `usage:
  tessera key new <key file> [Ed25519|P-256|P-384|P-521]
  tessera key publish <key file> <region> <capability> [--expires <days>]   (TESSERA_ADDRESS, TESSERA_TOKEN, TESSERA_TLS, TESSERA_CA_FILE)
  tessera key sign <key file> <region> <capability> <registry> <audience> [lifetime seconds]`;

class UsageError extends Error {}

export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const [group, command, file, ...rest] = argv;
  if (group !== "key" || !command || !file) throw new UsageError(USAGE);
  if (command === "new") {
    const key = generateServiceKey((rest[0] ?? "Ed25519") as ServiceKeyKind);
    writeFileSync(file, key.privateKeyPem, { mode: 0o600, flag: "wx" });
    return JSON.stringify(key.publicJwk);
  }
  const key = serviceKeyOf(readFileSync(file, "utf8"));
  if (command === "sign") {
    const [region, capability, registry, audience, lifetime = "60"] = rest;
    if (!region || !capability || !registry || !audience || !/^\d+$/.test(lifetime)) throw new UsageError(USAGE);
    return proveMyself({ privateKey: key, region, capability, registry, audience, lifetimeSeconds: Number(lifetime) });
  }
  if (command === "publish") {
    const [region, capability, flag, days] = rest;
    if (!region || !capability || (flag !== undefined && (flag !== "--expires" || !days || !/^\d+$/.test(days)))) throw new UsageError(USAGE);
    const token = env.TESSERA_TOKEN;
    if (!token) throw new UsageError("set TESSERA_TOKEN to an access token that may publish the key");
    const tls = env.TESSERA_CA_FILE ? { ca: readFileSync(env.TESSERA_CA_FILE) } : env.TESSERA_TLS === "1" || env.TESSERA_TLS === "true";
    const client = createTesseraClient(env.TESSERA_ADDRESS || "127.0.0.1:50051", { tls, token });
    try {
      const { capability: published } = await client.registry.publishCapability({
        regionId: region,
        capability,
        publicKey: JSON.stringify(key.publicJwk),
        expireTime: days ? new Date(Date.now() + Number(days) * 86_400_000) : undefined,
        tenantId: "",
      });
      return JSON.stringify({ region: published?.regionId, capability: published?.capability, keyId: published?.keyId, expireTime: published?.expireTime });
    } finally {
      client.close();
    }
  }
  throw new UsageError(USAGE);
}

// Run when executed (bin), not when imported (tests).
if (isEntryPoint()) {
  main(process.argv.slice(2)).then(
    (output) => console.log(output),
    (error: unknown) => {
      if (error instanceof UsageError) console.error(error.message);
      else if (error instanceof TesseraClientError) console.error(`tessera: ${error.status} ${error.reason ?? ""}: ${error.details}`);
      else console.error(`tessera: ${(error as Error).message}`);
      process.exitCode = 2;
    },
  );
}

function isEntryPoint(): boolean {
  const entry = process.argv[1] ?? "";
  return /(^|[\\/])(tessera|cli\.(js|ts))$/.test(entry);
}
