/**
 * The "verify and parse" baseline for `bench/ingest.ts`: bare `node:http`, the same header HMAC check
 * kyc-relay does, `JSON.parse`, and no storage. Whatever kyc-relay costs beyond this is its own work.
 *
 * Environment: CASHFREE_CLIENT_SECRET, BASELINE_PORT, BASELINE_HOST (default 127.0.0.1),
 * BASELINE_PATH (default /webhooks/cashfree).
 */
import { newEventId, serveBare } from "./bare.js"

serveBare({
  name: "baseline",
  accept: (_text, _parsed, answer) => answer({ status: "accepted", event_id: newEventId() })
})
