// A service's key pair and assertions from the command line (README
// "Services proving who they are"), for trying the Region System out and for
// scripts; services in code sign the same assertions with their own library.
//   npm run --silent service-key -- new <key file> [Ed25519|P-256|P-384|P-521]
//       writes the private key (PKCS#8 PEM, mode 600) and prints the public JWK to publish
//   npm run --silent service-key -- sign <key file> <region> <capability> <registry> <audience> [lifetime seconds]
//       prints a fresh single-use assertion (regionmeta, iat, exp, jti, aud)
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";

const [command, file, ...rest] = process.argv.slice(2);
const fail = (message: string): never => {
  console.error(message);
  process.exit(2);
};
const b64 = (v: object) => Buffer.from(JSON.stringify(v)).toString("base64url");
const CURVES: Record<string, { alg: string; hash: string | null }> = {
  Ed25519: { alg: "EdDSA", hash: null },
  "P-256": { alg: "ES256", hash: "sha256" },
  "P-384": { alg: "ES384", hash: "sha384" },
  "P-521": { alg: "ES512", hash: "sha512" },
};

if (command === "new" && file) {
  const kind = rest[0] ?? "Ed25519";
  if (!CURVES[kind]) fail(`key kind must be one of ${Object.keys(CURVES).join(", ")}`);
  const pair = kind === "Ed25519" ? generateKeyPairSync("ed25519") : generateKeyPairSync("ec", { namedCurve: kind });
  writeFileSync(file, pair.privateKey.export({ format: "pem", type: "pkcs8" }), { mode: 0o600 });
  console.log(JSON.stringify(pair.publicKey.export({ format: "jwk" })));
} else if (command === "sign" && file && rest.length >= 4) {
  const [region, capability, registry, audience, lifetime = "60"] = rest as [string, string, string, string, string?];
  const privateKey = createPrivateKey(readFileSync(file));
  const jwk = createPublicKey(privateKey).export({ format: "jwk" }) as { crv?: string };
  const kind = CURVES[jwk.crv ?? ""] ?? fail(`unsupported key in ${file}`);
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    regionmeta: { id: region, capability, registry, expires: now + 3600 },
    data: {},
    iat: now,
    exp: now + Number(lifetime),
    jti: randomBytes(16).toString("base64url"),
    aud: audience,
  };
  const input = `${b64({ alg: kind.alg, typ: "JWT" })}.${b64(claims)}`;
  const signature = kind.hash === null ? sign(null, Buffer.from(input), privateKey) : sign(kind.hash, Buffer.from(input), { key: privateKey, dsaEncoding: "ieee-p1363" });
  console.log(`${input}.${signature.toString("base64url")}`);
} else {
  fail("usage: service-key new <key file> [Ed25519|P-256|P-384|P-521] | service-key sign <key file> <region> <capability> <registry> <audience> [lifetime seconds]");
}
