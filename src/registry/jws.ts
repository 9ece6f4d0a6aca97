// The Region System's JWS code lives in the client package (one copy for the
// server and for callers that verify assertions themselves); here its parse
// errors become Tessera's TOKEN_INVALID.
import { parseJws as parse, type ParsedJws } from "@tessera/client";
import { unauthenticated } from "../errors.ts";

export { readPublicKey, signatureValid, signatureValidOffloaded, signJws, type ParsedJws, type SignatureAlgorithm, type VerifyKey } from "@tessera/client";

const tokenInvalid = (message: string) => unauthenticated("TOKEN_INVALID", message);

/** Splits a compact JWS and decodes header and payload (nothing is trusted yet); malformed input is TOKEN_INVALID. */
export function parseJws(token: string, maxLength: number, what = "token", invalid: (m: string) => Error = tokenInvalid): ParsedJws {
  return parse(token, maxLength, what, invalid);
}
