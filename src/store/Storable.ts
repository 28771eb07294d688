// U+0000, which PostgreSQL text cannot hold, and a UTF-16 surrogate without its pair, which the drivers' UTF-8
// encoding turns into U+FFFD on the way in.
const UNSTORABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g

/**
 * A copy of a string as every store holds it: what the store would change on the way in is changed here already
 * (to U+FFFD), so that a value compared in code is the value the store compares.
 */
export const storable = (text: string): string => text.replace(UNSTORABLE, "\uFFFD")
