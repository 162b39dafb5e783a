// Checks contracts/test_vectors/sealing.json with an independent HPKE implementation
// (@hpke/core): each vector's blob is reproduced from its fixed keys and opens to its
// plaintext. Usage: node sealing-vectors.mjs <sealing.json>. Prints one JSON line.
import { readFile } from "node:fs/promises";
import { keyId, openSealed, sealTo } from "./sealing.mjs";

const hex = (text) => new Uint8Array(Buffer.from(text, "hex"));
const file = JSON.parse(await readFile(process.argv[2], "utf8"));
const results = [];
for (const v of file.vectors) {
  const plaintext = hex(v.plaintext_hex);
  const sealed = await sealTo(
    hex(v.recipient_public_key_hex), v.info, plaintext, hex(v.ephemeral_private_key_hex),
  );
  const opened = await openSealed(hex(v.recipient_private_key_hex), v.info, v.sealed);
  results.push({
    name: v.name,
    kid: keyId(hex(v.recipient_public_key_hex)) === v.kid,
    reproduced: JSON.stringify(sealed) === JSON.stringify(v.sealed),
    opened: Buffer.from(opened).equals(Buffer.from(plaintext)),
  });
}
console.log(JSON.stringify(results));
process.exit(results.every((r) => r.kid && r.reproduced && r.opened) ? 0 : 1);
