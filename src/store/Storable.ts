/** A copy of a string that every store can hold: PostgreSQL text cannot contain U+0000. */
export const storable = (text: string): string => text.replace(/\u0000/g, "\uFFFD")
