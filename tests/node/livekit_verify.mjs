// Verify a LiveKit join token with livekit-server-sdk's TokenVerifier (what LiveKit's own Node
// tooling trusts). Reads {"token", "key", "secret"} as JSON on stdin; prints the verified claims
// as JSON, or the verifier's error on stderr with exit status 1.
import { TokenVerifier } from "livekit-server-sdk";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const { token, key, secret } = JSON.parse(input);
try {
  const claims = await new TokenVerifier(key, secret).verify(token);
  process.stdout.write(JSON.stringify(claims));
} catch (error) {
  process.stderr.write(`${error.code ?? error.name}: ${error.message}\n`);
  process.exit(1);
}
