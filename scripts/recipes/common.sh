# Sourced by every recipe: strict mode, the server's address, two JSON helpers.
# Recipes run from the repository root so that `npx buf` is the project's
# pinned buf (elsewhere npx would look for an unrelated package named "buf").
set -eu
cd "$(dirname "$0")/../.."
: "${TESSERA_ADDR:=127.0.0.1:50051}"

# Prints one field of the JSON on stdin: `json_field tenant.id`.
json_field() {
  node -pe "JSON.parse(require('fs').readFileSync(0, 'utf8')).$1"
}

# Prints `export` lines for the tokens of an IssueToken or Refresh response
# (JSON on stdin), for the caller to eval.
session_exports() {
  node -e '
    const response = JSON.parse(require("fs").readFileSync(0, "utf8"));
    const session = {
      TESSERA_TOKEN: response.accessToken,
      TESSERA_REFRESH_TOKEN: response.refreshToken ?? "",
      TESSERA_SESSION_ID: response.sessionId ?? "",
    };
    for (const [name, value] of Object.entries(session)) {
      // JWTs, opaque tokens and UUIDs: base64url, dots and hyphens, nothing a shell interprets.
      if (!/^[A-Za-z0-9._-]*$/.test(value)) throw new Error(`unexpected characters in ${name}`);
      console.log(`export ${name}=${value}`);
    }'
}
