// A service's key pair and assertions from the command line (README
// "Services proving who they are"), for trying the Region System out and for
// scripts; services in code use the same functions of @tessera/client
// (generateServiceKey, proveMyself), whose `tessera` command does this too.
//   npm run --silent service-key -- new <key file> [Ed25519|P-256|P-384|P-521]
//       writes the private key (PKCS#8 PEM, mode 600) and prints the public JWK to publish
//   npm run --silent service-key -- sign <key file> <region> <capability> <registry> <audience> [lifetime seconds]
//       prints a fresh single-use assertion (regionmeta, iat, exp, jti, aud)
import { readFileSync, writeFileSync } from "node:fs";
import { generateServiceKey, proveMyself, serviceKeyOf, type ServiceKeyKind } from "@tessera/client";

const [command, file, ...rest] = process.argv.slice(2);
const fail = (message: string): never => {
  console.error(message);
  process.exit(2);
};
const KINDS = ["Ed25519", "P-256", "P-384", "P-521"];

if (command === "new" && file) {
  const kind = rest[0] ?? "Ed25519";
  if (!KINDS.includes(kind)) fail(`key kind must be one of ${KINDS.join(", ")}`);
  const key = generateServiceKey(kind as ServiceKeyKind);
  writeFileSync(file, key.privateKeyPem, { mode: 0o600 });
  console.log(JSON.stringify(key.publicJwk));
} else if (command === "sign" && file && rest.length >= 4) {
  const [region, capability, registry, audience, lifetime = "60"] = rest as [string, string, string, string, string?];
  let key;
  try {
    key = serviceKeyOf(readFileSync(file, "utf8"));
  } catch (error) {
    fail(`unsupported key in ${file}: ${(error as Error).message}`);
  }
  console.log(proveMyself({ privateKey: key!, region, capability, registry, audience, lifetimeSeconds: Number(lifetime), regionExpires: Math.floor(Date.now() / 1000) + 3600 }));
} else {
  fail("usage: service-key new <key file> [Ed25519|P-256|P-384|P-521] | service-key sign <key file> <region> <capability> <registry> <audience> [lifetime seconds]");
}
