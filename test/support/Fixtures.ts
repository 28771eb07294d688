import { readdirSync, readFileSync } from "node:fs"
import { resolve } from "node:path"
import { fileURLToPath } from "node:url"

export const repoRoot = fileURLToPath(new URL("../../", import.meta.url))

/** The provider fixtures shared by every kyc-relay checkout (`../shared/fixtures`). */
export const fixturesDir = resolve(repoRoot, "../shared/fixtures")

/** The secret the fixtures' in-body signatures were made with. */
export const FIXTURE_SECRET = "cf_fixture_client_secret_v1"

export interface EventFixture {
  readonly eventType: string
  readonly text: string
}

export const eventFixtures: ReadonlyArray<EventFixture> = readdirSync(resolve(fixturesDir, "events"))
  .filter((name) => name.endsWith(".json"))
  .sort()
  .map((name) => ({
    eventType: name.replace(/\.json$/, ""),
    text: readFileSync(resolve(fixturesDir, "events", name), "utf8")
  }))

export const fixture = (eventType: string): EventFixture => {
  const found = eventFixtures.find((f) => f.eventType === eventType)
  if (found === undefined) throw new Error(`no fixture for ${eventType}`)
  return found
}

/** A unique event: the call-queued fixture with its own verification id, so each one is new and none is stale. */
export const uniqueEvent = (prefix: string, i: number) => {
  const json = JSON.parse(fixture("VKYC_USER_CALL_QUEUED").text)
  json.data.verification_id = `${prefix}_${i}`
  return JSON.stringify(json)
}

export interface SigningVector {
  readonly id: string
  readonly scheme: "header" | "legacy-body"
  readonly secret: string
  readonly timestamp: string | null
  readonly body: string
  readonly expected_signature: string
  readonly canonical_string?: string
}

export const signingVectors = JSON.parse(
  readFileSync(resolve(fixturesDir, "signing.json"), "utf8")
) as ReadonlyArray<SigningVector>
