#!/bin/sh
# Decode the error details of a failed call. buf curl prints them as base64
# (it decodes only the types built into it, and google.rpc.ErrorInfo is not
# one); this decodes each with the schema the server reflects,
# gen/descriptor-set.binpb. Feed it buf curl's stderr:
#   scripts/recipes/verify.sh 2>&1 >/dev/null | scripts/recipes/error-details.sh
# prints the code and message, then one line per detail:
#   unauthenticated: the session is revoked
#   google.rpc.ErrorInfo {"reason":"SESSION_REVOKED","domain":"tessera.identity.v1"}
. "$(dirname "$0")/common.sh"
# Lines before buf curl's JSON (such as npx's own warnings) are skipped.
error=$(node -e '
  const input = require("fs").readFileSync(0, "utf8");
  const start = input.search(/^\{/m);
  if (start < 0) {
    console.error("error-details.sh: no buf curl error on stdin (did the call fail? pipe its stderr: 2>&1 >/dev/null |)");
    process.exit(1);
  }
  const error = JSON.parse(input.slice(start));
  console.log(`${error.code}: ${error.message ?? ""}`);
  for (const detail of error.details ?? []) console.log(detail.type, detail.value);
')
printf '%s\n' "$error" | {
  read -r status && printf '%s\n' "$status"
  while read -r type value; do
    printf '%s ' "$type"
    node -e 'process.stdout.write(Buffer.from(process.argv[1], "base64"))' "$value" |
      npx buf convert gen/descriptor-set.binpb --type "$type" --from -#format=binpb --to -#format=json
    echo
  done
}
