// Typechecked (never run) against the installed package's "require" types
// (dist/cjs/*.d.ts): a CommonJS file's import resolves with the "require"
// condition.
import { createTesseraClient, errorReason, TesseraSession, TokenVerifier, type VerifiedAccessToken } from "@tessera/client";

export async function whoAmI(address: string, password: string): Promise<string> {
  const client = createTesseraClient({ address });
  try {
    const session = await TesseraSession.start(client, { credential: { $case: "password", value: { tenant: "system", username: "admin", password } } });
    const verified: VerifiedAccessToken = await new TokenVerifier(client).verify((await session.refresh()).accessToken);
    return (await session.client.users.getMe({})).user?.username ?? verified.subject;
  } catch (error) {
    return errorReason(error) ?? "unknown";
  } finally {
    client.close();
  }
}

// @ts-expect-error: the credential is a tagged union
export const wrong = (client: ReturnType<typeof createTesseraClient>) => TesseraSession.start(client, { credential: { $case: "passwort" } });
