// Sealing to the hub's intake key as docs/SEALING.md describes, with @hpke/core (RFC 9180):
// base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM, empty AAD.
import { createHash } from "node:crypto";
import { Aes256Gcm, CipherSuite, DhkemX25519HkdfSha256, HkdfSha256 } from "@hpke/core";

export const SUITE_NAME = "X25519-SHA256-A256GCM";
const suite = new CipherSuite({
  kem: new DhkemX25519HkdfSha256(),
  kdf: new HkdfSha256(),
  aead: new Aes256Gcm(),
});
const utf8 = new TextEncoder();

/** Key id: hex of the first 8 bytes of SHA-256 over the raw 32-byte public key. */
export function keyId(rawPublicKey) {
  return createHash("sha256").update(rawPublicKey).digest("hex").slice(0, 16);
}

export function intakeInfo(commandId, agencyId) {
  return `nrm-intake/1|${commandId}|${agencyId}`;
}

export function releaseInfo(caseId, requestId, agencyId) {
  return `nrm-release/1|${caseId}|${requestId}|${agencyId}`;
}

/** Seal `plaintext` (bytes) to the raw X25519 public key; the JSON object that travels.
 * `ephemeralPrivateKey` (raw bytes) only for test vectors: HPKE draws a fresh one. */
export async function sealTo(rawPublicKey, info, plaintext, ephemeralPrivateKey) {
  const recipientPublicKey = await suite.kem.deserializePublicKey(rawPublicKey);
  const params = { recipientPublicKey, info: utf8.encode(info) };
  if (ephemeralPrivateKey) {
    const privateKey = await suite.kem.deserializePrivateKey(ephemeralPrivateKey);
    const publicKey = await suite.kem.deserializePublicKey(await x25519Public(ephemeralPrivateKey));
    params.ekm = { privateKey, publicKey };
  }
  const sender = await suite.createSenderContext(params);
  const ciphertext = new Uint8Array(await sender.seal(plaintext)); // AAD empty
  const enc = new Uint8Array(sender.enc);
  const blob = Buffer.concat([enc, ciphertext]).toString("base64");
  return { v: 1, suite: SUITE_NAME, kid: keyId(rawPublicKey), blob };
}

/** Open a sealed object with the raw X25519 private key (the recipient side). */
export async function openSealed(rawPrivateKey, info, sealed) {
  const raw = Buffer.from(sealed.blob, "base64");
  const recipientKey = await suite.kem.deserializePrivateKey(rawPrivateKey);
  const recipient = await suite.createRecipientContext({
    recipientKey,
    enc: raw.subarray(0, 32),
    info: utf8.encode(info),
  });
  return new Uint8Array(await recipient.open(raw.subarray(32)));
}

async function x25519Public(rawPrivateKey) {
  const { createPrivateKey, createPublicKey } = await import("node:crypto");
  // PKCS#8 prefix of an X25519 private key (RFC 8410), then the 32 raw bytes.
  const prefix = Buffer.from("302e020100300506032b656e04220420", "hex");
  const key = createPrivateKey({ key: Buffer.concat([prefix, rawPrivateKey]), format: "der", type: "pkcs8" });
  return new Uint8Array(createPublicKey(key).export({ format: "der", type: "spki" }).subarray(-32));
}
