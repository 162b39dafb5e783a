// An example agency system in JavaScript, using only the published contract: it signs in to a
// secured hub with its nkey seed, asks for the intake key, seals a screening's personal data to
// it (docs/SEALING.md), submits the screening on its own subject and reads its own feed.
//
//   NATS_URL=nats://127.0.0.1:<port> NRM_AGENCY=kg-ngo-osh-crisis-centre \
//   NRM_SEED_FILE=var/credentials/kg-ngo-osh-crisis-centre.nk \
//   node agency.mjs screening.json
//
// screening.json is the screening as the agency holds it (contracts/schema/
// screening-interview.v1.json: personal data in clear). Prints one JSON line of ids, codes and
// event types only: personal data never leaves the sealed blob.
import { readFile } from "node:fs/promises";
import { AckPolicy, connect, nkeyAuthenticator } from "nats";
import { intakeInfo, keyId, sealTo } from "./sealing.mjs";

const agency = process.env.NRM_AGENCY;
const feedWait = Number(process.env.NRM_FEED_WAIT_MS ?? 20000);
const seed = (await readFile(process.env.NRM_SEED_FILE, "utf8")).trim();
const interview = JSON.parse(await readFile(process.argv[2], "utf8"));
const nc = await connect({
  servers: process.env.NATS_URL.split(","),
  authenticator: nkeyAuthenticator(new TextEncoder().encode(seed)),
  inboxPrefix: `_INBOX.${agency}`, // replies are delivered only below the agency's prefix
  reconnect: false,
});
const json = (msg) => JSON.parse(new TextDecoder().decode(msg.data));
const request = async (subject, body) =>
  json(await nc.request(subject, new TextEncoder().encode(body), { timeout: 10000 }));

// 1. The intake key: {"kid", "public_key": base64 of the raw 32-byte X25519 key}.
const intake = await request("nrm.ctl.intake.key", "");
const publicKey = new Uint8Array(Buffer.from(intake.public_key, "base64"));
if (keyId(publicKey) !== intake.kid) throw new Error("intake key id does not match the key");

// 2. Seal the personal data to it, bound to this command and this agency.
const { personal_data: personalData, ...facts } = interview;
const plaintext = new TextEncoder().encode(JSON.stringify(personalData));
const sealed = await sealTo(publicKey, intakeInfo(facts.command_id, agency), plaintext);

// 3. Submit on the agency's own subject; the reply is a CloudEvent.
const reply = await request(
  `nrm.cmd.screening.submit.${agency}`,
  JSON.stringify({ ...facts, personal_data: sealed }),
);
const answer = reply.data;
const caseId = answer.aggregate_id;

// 4. The feed: one durable consumer named after the agency, on its own feed only.
const jsm = await nc.jetstreamManager({ checkAPI: false });
await jsm.consumers.add("NRM_FEEDS", {
  name: agency,
  durable_name: agency,
  filter_subject: `nrm.feed.${agency}.>`,
  ack_policy: AckPolicy.Explicit,
});
const consumer = await nc.jetstream().consumers.get("NRM_FEEDS", agency);
const seen = new Set();
const feed = [];
const deadline = Date.now() + feedWait;
while (answer.status === "accepted" && Date.now() < deadline) {
  const batch = await consumer.fetch({ max_messages: 50, expires: 1000 });
  for await (const msg of batch) {
    const event = json(msg);
    if (!seen.has(event.id)) {  // deduplicate by the CloudEvent id
      seen.add(event.id);
      if (event.data.case_id === caseId) {
        feed.push({ type: event.type, subject: msg.subject, referral_id: event.data.referral_id });
      }
    }
    msg.ack();
  }
  if (feed.some((e) => e.type === "referral.requested")) break;
}
await nc.drain();
console.log(
  JSON.stringify({
    command_id: facts.command_id,
    reply_type: reply.type,
    status: answer.status,
    case_id: caseId,
    errors: answer.errors ?? [],
    kid: sealed.kid,
    feed,
  }),
);
process.exit(answer.status === "accepted" ? 0 : 1);
