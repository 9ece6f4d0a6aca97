// @tessera/client: the Tessera client SDK.
//
//   import { createTesseraClient, TesseraSession } from "@tessera/client";
//   const tessera = createTesseraClient("127.0.0.1:50051");
//   const session = await TesseraSession.start(tessera, {
//     credential: { $case: "password", value: { tenant: "acme", username: "alice", password } },
//   });
//   const me = await session.client.users.getMe({});
//
// Typed clients of every service (createTesseraClient), sessions that rotate
// their tokens (TesseraSession), typed errors (TesseraClientError), local
// verification of access tokens with revocations (TokenVerifier,
// RevocationWatcher, authorize, tesseraAuthMiddleware), service identity
// (generateServiceKey, proveMyself, registry resolvers) and every generated
// message type and service definition.
export {
  bearerAuth,
  createTesseraClient,
  isRetriedMethod,
  type RetryPolicy,
  type TesseraCallOptions,
  type TesseraClient,
  type TesseraClientOptions,
  type TesseraServiceClients,
  type TlsOptions,
  type TokenSource,
} from "./client.ts";
export { ERROR_DOMAIN, errorReason, TesseraClientError, tesseraErrorsMiddleware, toTesseraClientError, type FieldViolation } from "./errors.ts";
export { startSession, TesseraSession, type SessionOptions, type SessionStart, type SessionTokens } from "./session.ts";
export {
  TokenVerificationError,
  TokenVerifier,
  type JwksSource,
  type TokenRefusal,
  type TokenVerifierOptions,
  type VerifiedAccessToken,
} from "./verifier.ts";
export { BACKLOG_END_HEADER, RevocationWatcher, type RevocableToken, type RevocationRefusal, type RevocationWatcherOptions } from "./revocations.ts";
export * from "./stubs.ts";
export { RichClientError } from "nice-grpc-error-details";
export { ClientError, Metadata, Status } from "nice-grpc-common";
export {
  JwsError,
  parseJws,
  readPublicKey,
  signatureValid,
  signatureValidOffloaded,
  signJws,
  type ParsedJws,
  type SignatureAlgorithm,
  type VerifyKey,
} from "./registry/jws.ts";
export {
  CAPABILITY_RECORD_TYP,
  capabilityDnsName,
  capabilityKey,
  capabilityRecord,
  dnsRecords,
  MAX_RECORD_LENGTH,
  peekRecord,
  RecordError,
  REGION_RECORD_TYP,
  regionDnsName,
  regionRecord,
  signRecord,
  splitTxt,
  verifyRecord,
  zoneFile,
  type CapabilityRecord,
  type RegionRecord,
  type RegistryDocument,
  type TxtRecord,
} from "./registry/records.ts";
export { generateServiceKey, proveMyself, serviceKeyOf, type ProveMyselfOptions, type ServiceKey, type ServiceKeyKind } from "./registry/service.ts";
export {
  AssertionError,
  AssertionVerifier,
  RegistryResolver,
  RegistryUnavailableError,
  type AssertionVerifierOptions,
  type RegistryResolverOptions,
  type RegistrySource,
  type ResolvedCapability,
  type VerifiedAssertion,
} from "./registry/resolvers.ts";
export { authorize, hasPermission, tesseraAuthMiddleware, type AuthMiddlewareOptions, type AuthorizeResult, type TesseraAuthContext } from "./middleware.ts";
