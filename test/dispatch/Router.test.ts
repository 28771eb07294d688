import { assert, describe, it } from "@effect/vitest"
import { Duration, Either, Schema } from "effect"
import { Route } from "../../src/config/RelayConfig.js"
import { compile, route } from "../../src/dispatch/Router.js"
import { CashfreeEvent } from "../../src/domain/Event.js"
import { eventFixtures, fixture } from "../support/Fixtures.js"

const decodeRoutes = Schema.decodeUnknownSync(Schema.Array(Route))
const event = (eventType: string) => Schema.decodeUnknownSync(Schema.parseJson(CashfreeEvent))(fixture(eventType).text)
const instances = (routes: ReadonlyArray<unknown>, eventType: string, stale = false) =>
  route(compile(decodeRoutes(routes)), event(eventType), stale).map((target) => target.instance)

describe("route matching", () => {
  const cases: ReadonlyArray<readonly [string, ReadonlyArray<unknown>, string, ReadonlyArray<string>]> = [
    ["exact event type", [{ match: { event_type: "VKYC_USER_LINK_EXPIRED" }, to: "a" }], "VKYC_USER_LINK_EXPIRED", ["a"]],
    ["exact event type, other event", [{ match: { event_type: "VKYC_USER_LINK_EXPIRED" }, to: "a" }], "KYC_LINK_EXPIRED", []],
    ["list of types", [{ match: { event_type: ["KYC_LINK_EXPIRED", "VKYC_USER_LINK_EXPIRED"] }, to: "a" }], "KYC_LINK_EXPIRED", ["a"]],
    ["glob", [{ match: { event_type: "VKYC_*" }, to: "a" }], "VKYC_USER_CALL_STARTED", ["a"]],
    ["glob, no match", [{ match: { event_type: "VKYC_*" }, to: "a" }], "KYC_LINK_SUCCESS", []],
    ["glob with ?", [{ match: { event_type: "KYC_LINK_?XPIRED" }, to: "a" }], "KYC_LINK_EXPIRED", ["a"]],
    ["star matches all", [{ match: { event_type: "*" }, to: "a" }], "KYC_LINK_SUCCESS", ["a"]],
    ["empty match matches all", [{ to: "a" }], "VKYC_USER_CALL_QUEUED", ["a"]],
    ["status", [{ match: { status: "AUDITOR_REVIEWED" }, to: "a" }], "VKYC_AUDITOR_REVIEW_COMPLETED", ["a"]],
    ["status of a KYC link is its form_status", [{ match: { status: "SUCCESS" }, to: "a" }], "KYC_LINK_SUCCESS", ["a"]],
    ["sub_status list", [{ match: { sub_status: ["AUDITOR_REJECTED", "AUDITOR_APPROVED"] }, to: "a" }], "VKYC_AUDITOR_REVIEW_COMPLETED", ["a"]],
    ["sub_status, KYC links have none", [{ match: { sub_status: "AUDITOR_APPROVED" }, to: "a" }], "KYC_LINK_SUCCESS", []],
    ["data field equality", [{ match: { data: { user_id: "user_58213" } }, to: "a" }], "VKYC_USER_CALL_QUEUED", ["a"]],
    ["data field equality, number", [{ match: { data: { reference_id: 10449 } }, to: "a" }], "VKYC_USER_CALL_QUEUED", ["a"]],
    ["data field mismatch", [{ match: { data: { user_id: "someone" } }, to: "a" }], "VKYC_USER_CALL_QUEUED", []],
    ["data field in", [{ match: { data: { auditor_remarks: { in: ["Looks Good", "OK"] } } }, to: "a" }], "VKYC_AUDITOR_REVIEW_COMPLETED", ["a"]],
    ["data field null", [{ match: { data: { recording_link: null } }, to: "a" }], "VKYC_USER_CALL_QUEUED", ["a"]],
    ["nested data path", [{ match: { data: { "verification_details.0.status": "SUCCESS" } }, to: "a" }], "KYC_LINK_ACTION_PERFORMED", ["a"]],
    ["all conditions must hold", [{ match: { event_type: "VKYC_*", status: "RECEIVED" }, to: "a" }], "VKYC_USER_CALL_QUEUED", []],
    [
      "every matching route fires by default, each instance once",
      [{ match: { event_type: "VKYC_*" }, to: ["a", "b"] }, { to: ["b", "c"] }],
      "VKYC_USER_CALL_QUEUED",
      ["a", "b", "c"]
    ],
    [
      "continue: false stops later routes",
      [{ match: { event_type: "VKYC_*" }, to: "a", continue: false }, { to: "b" }],
      "VKYC_USER_CALL_QUEUED",
      ["a"]
    ],
    [
      "continue: false only applies when its route matched",
      [{ match: { event_type: "KYC_*" }, to: "a", continue: false }, { to: "b" }],
      "VKYC_USER_CALL_QUEUED",
      ["b"]
    ],
    ["no route matches", [{ match: { event_type: "KYC_*" }, to: "a" }], "VKYC_USER_CALL_QUEUED", []]
  ]
  for (const [name, routes, eventType, expected] of cases) {
    it(name, () => assert.deepStrictEqual(instances(routes, eventType), expected))
  }

  it("skip_stale drops a stale event for that route only, and still stops with continue: false", () => {
    const routes = [{ to: "crm", skip_stale: true, continue: false }, { to: "log" }]
    assert.deepStrictEqual(instances(routes, "VKYC_USER_LINK_GENERATED", true), [])
    assert.deepStrictEqual(instances(routes, "VKYC_USER_LINK_GENERATED", false), ["crm"])
    assert.deepStrictEqual(instances([{ to: "crm", skip_stale: true }, { to: "log" }], "VKYC_USER_LINK_GENERATED", true), ["log"])
  })

  it("carries the first matching route's params and retry overrides", () => {
    const [target] = route(
      compile(decodeRoutes([{ to: "a", params: { channel: "#kyc" }, retry: { max_attempts: 2, initial_delay: "5s" } }, { to: "a" }])),
      event("VKYC_USER_CALL_QUEUED"),
      false
    )
    assert.deepStrictEqual(target, {
      instance: "a",
      route: 0,
      params: { channel: "#kyc" },
      retry: { max_attempts: 2, initial_delay: Duration.seconds(5) }
    })
  })

  it("routes every fixture somewhere with a catch-all", () => {
    for (const f of eventFixtures) assert.deepStrictEqual(instances([{ to: "log" }], f.eventType), ["log"])
  })

  it("refuses a glob with characters that are not event-type characters", () => {
    assert.isTrue(Either.isLeft(Schema.decodeUnknownEither(Route)({ match: { event_type: "vkyc_[a-z]" }, to: "a" })))
  })
})
