import { BlockList, isIP } from "node:net"
import type { IncomingMessage } from "node:http"

const blockListOf = (ranges: ReadonlyArray<string>): BlockList => {
  const list = new BlockList()
  for (const range of ranges) {
    const [address, bits] = range.split("/") as [string, string | undefined]
    const type = isIP(address) === 6 ? "ipv6" : "ipv4"
    if (bits === undefined) list.addAddress(address, type)
    else list.addSubnet(address, Number(bits), type)
  }
  return list
}

const contains = (list: BlockList, address: string) => {
  const plain = address.startsWith("::ffff:") && isIP(address.slice(7)) === 4 ? address.slice(7) : address
  const family = isIP(plain)
  return family !== 0 && list.check(plain, family === 6 ? "ipv6" : "ipv4")
}

/**
 * Decides whether a request comes from an allowed source. The source is the peer address, unless the peer is
 * a trusted proxy: then X-Forwarded-For is read from the right, skipping trusted proxies, and the first other
 * address is the source. Entries a client wrote itself sit further left and are never reached.
 */
export const sourceCheck = (allowed: ReadonlyArray<string> | undefined, trustedProxies: ReadonlyArray<string>) => {
  if (allowed === undefined) return (_: IncomingMessage) => true
  const allow = blockListOf(allowed)
  const trusted = blockListOf(trustedProxies)
  return (req: IncomingMessage): boolean => {
    let source = req.socket.remoteAddress ?? ""
    if (contains(trusted, source)) {
      const header = req.headers["x-forwarded-for"]
      const hops = (Array.isArray(header) ? header.join(",") : header ?? "").split(",").map((hop) => hop.trim()).filter(Boolean)
      for (let i = hops.length - 1; i >= 0; i--) {
        source = hops[i]!
        if (!contains(trusted, source)) break
      }
    }
    return contains(allow, source)
  }
}
