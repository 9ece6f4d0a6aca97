// A consumer of @tessera/client through `import` (the package's ESM build).
// Reads TESSERA_ADDRESS, TESSERA_TENANT, TESSERA_USERNAME and TESSERA_PASSWORD;
// logs in, calls, verifies (remotely and locally), refreshes and fails a login
// on purpose, then prints one JSON line of what it saw.
import {
  createTesseraClient,
  ErrorReason,
  errorReason,
  IssueTokenRequest,
  TesseraClientError,
  TesseraSession,
  TokenVerifier,
} from "@tessera/client";

function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

const [tenant, username, password] = [env("TESSERA_TENANT"), env("TESSERA_USERNAME"), env("TESSERA_PASSWORD")];
const credential = (secret) => ({ $case: "password", value: { tenant, username, password: secret } });

const client = createTesseraClient(env("TESSERA_ADDRESS"));
try {
  const session = await TesseraSession.start(client, { credential: credential(password) });
  const { user } = await session.client.users.getMe({});
  const verifier = new TokenVerifier(client);
  const checkToken = async (token) => {
    const { principal } = await client.verify.verifyToken({ token });
    const local = await verifier.verify(token);
    return {
      remote: { subject: principal?.subject, tenantName: principal?.tenantName, username: principal?.username, sessionId: principal?.sessionId },
      local: { subject: local.subject, kind: local.kind, tenantId: local.tenantId, username: local.username, sessionId: local.sessionId, scope: local.scope },
    };
  };
  const before = session.tokens;
  const first = await checkToken(before.accessToken);
  const after = await session.refresh();
  const second = await checkToken(after.accessToken);
  const again = await session.client.users.getMe({});

  const failure = await TesseraSession.start(client, { credential: credential(`${password} but wrong`) }).then(
    () => undefined,
    (error) => error,
  );

  const request = IssueTokenRequest.fromPartial({ credential: credential("x"), requestedPermissions: ["a.b.c"] });
  const decoded = IssueTokenRequest.decode(IssueTokenRequest.encode(request).finish());

  console.log(
    JSON.stringify({
      format: "esm",
      node: process.versions.node,
      entry: import.meta.resolve("@tessera/client"),
      me: { id: user?.id, username: user?.username, tenantId: user?.tenantId },
      sessionId: session.sessionId,
      ...first,
      refreshed: {
        rotated: after.accessToken !== before.accessToken && after.refreshToken !== before.refreshToken,
        refreshes: session.refreshes,
        sessionId: after.sessionId,
        meAgain: again.user?.id,
        ...second,
      },
      badPassword: {
        reason: errorReason(failure),
        isTesseraClientError: failure instanceof TesseraClientError,
        status: failure instanceof TesseraClientError ? failure.status : undefined,
        enumValue: ErrorReason[errorReason(failure)],
      },
      message: { roundTrip: JSON.stringify(decoded) === JSON.stringify(request), bytes: IssueTokenRequest.encode(request).finish().length },
      errorReasonEnum: ErrorReason.INVALID_CREDENTIALS,
    }),
  );
} finally {
  client.close();
}
