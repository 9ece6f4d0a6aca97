// Typechecked (never run) against the installed package's "import" types
// (dist/esm/*.d.ts): a small, realistic use of the API. The @ts-expect-error
// lines fail the check if the package's types ever degrade to `any`.
import {
  createTesseraClient,
  ErrorReason,
  errorReason,
  IssueTokenRequest,
  TesseraClientError,
  TesseraSession,
  TokenVerifier,
  type SessionTokens,
  type TesseraClient,
  type VerifiedAccessToken,
} from "@tessera/client";

export interface LoginResult {
  username: string;
  verified: VerifiedAccessToken;
  refreshed: SessionTokens;
}

export async function login(address: string, tenant: string, username: string, password: string): Promise<LoginResult | "wrong password"> {
  const client: TesseraClient = createTesseraClient(address, { defaultDeadlineMs: 5_000, retry: { maxRetries: 1 } });
  const request: IssueTokenRequest = IssueTokenRequest.fromPartial({ credential: { $case: "password", value: { tenant, username, password } } });
  try {
    if (request.credential?.$case !== "password") throw new Error("unreachable");
    const session = await TesseraSession.start(client, { credential: request.credential });
    const me = await session.client.users.getMe({});
    const name: string = me.user?.username ?? "";
    const { principal } = await client.verify.verifyToken({ token: session.tokens.accessToken });
    const remoteSession: string | undefined = principal?.sessionId;
    const verified = await new TokenVerifier(client, { audience: "tessera" }).verify(session.tokens.accessToken);
    const kind: "user" | "service" = verified.kind;
    const refreshed = await session.refresh();
    const expiresAt: Date = refreshed.expiresAt;
    void [remoteSession, kind, expiresAt];
    return { username: name, verified, refreshed };
  } catch (error) {
    if (errorReason(error) === "INVALID_CREDENTIALS") return "wrong password";
    if (error instanceof TesseraClientError) {
      const status: string = error.status;
      const retryAfter: number | undefined = error.retryDelayMs;
      throw new Error(`${status} ${error.reason ?? ""} ${retryAfter ?? ""}`, { cause: error });
    }
    throw error;
  } finally {
    client.close();
  }
}

export const invalidCredentials: number = ErrorReason.INVALID_CREDENTIALS;

export async function typeErrors(client: TesseraClient): Promise<void> {
  // @ts-expect-error: the client has the seven services only
  createTesseraClient("127.0.0.1:50051").accounts.list({});
  // @ts-expect-error: the credential is a tagged union
  await TesseraSession.start(client, { credential: { $case: "passwort", value: {} } });
  const me = await client.users.getMe({});
  // @ts-expect-error: responses are typed
  const id: number = me.user?.id;
  // @ts-expect-error: ErrorReason has no such member
  void ErrorReason.NO_SUCH_REASON;
  // @ts-expect-error: verify takes a token string
  await new TokenVerifier(client).verify(42);
  void id;
}
