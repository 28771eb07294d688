// better-sqlite3 ships no types; this covers only what bench/ingest.ts uses.
declare module "better-sqlite3" {
  namespace Database {
    interface Options {
      readonly readonly?: boolean
      readonly fileMustExist?: boolean
    }

    interface Statement {
      pluck(toggle?: boolean): Statement
      get(...parameters: ReadonlyArray<unknown>): unknown
      all(...parameters: ReadonlyArray<unknown>): Array<unknown>
    }
  }

  class Database {
    constructor(filename: string, options?: Database.Options)
    prepare(source: string): Database.Statement
    close(): void
  }

  export = Database
}
