import CResolv
import NIOPosix
import SignetAuthority

/// DNS questions the validator asks: TXT records for dns-01 and addresses of names to connect to, through the C
/// library's resolver (libresolv) pointed at the configured server, following CNAMEs. The blocking calls run on
/// NIO's thread pool, never on the concurrency pool.
struct DNSLookup: Sendable {
    /// `address:port` (IPv4), or nil for the system's resolv.conf.
    let server: (host: String, port: Int)?
    let timeoutSeconds: Int

    enum Failure: Error, CustomStringConvertible {
        case noSuchName(String)
        case noRecords(String, String)
        case failed(String, String)
        case cnameLoop(String)

        var description: String {
            switch self {
            case .noSuchName(let name): "\(name) does not exist (NXDOMAIN)"
            case .noRecords(let name, let type): "\(name) has no \(type) record"
            case .failed(let name, let type): "the \(type) query for \(name) failed (timeout or server failure)"
            case .cnameLoop(let name): "too many CNAMEs from \(name)"
            }
        }
    }

    static let typeA: Int32 = 1, typeCNAME: Int32 = 5, typeTXT: Int32 = 16, typeAAAA: Int32 = 28

    /// The TXT strings at `name` (each record's character-strings joined, as RFC 8555 §8.4 validators do).
    func txt(_ name: String) async throws -> [String] {
        try await records(name, type: Self.typeTXT, typeName: "TXT").map { data in
            var text = [UInt8](), index = 0
            while index < data.count {
                let length = Int(data[index])
                text += data[min(index + 1, data.count)..<min(index + 1 + length, data.count)]
                index += 1 + length
            }
            return String(decoding: text, as: UTF8.self)
        }
    }

    /// IPv4 then IPv6 addresses of `name`.
    func addresses(_ name: String) async throws -> [String] {
        var found: [String] = []
        for (type, typeName) in [(Self.typeA, "A"), (Self.typeAAAA, "AAAA")] {
            do {
                found += try await records(name, type: type, typeName: typeName).compactMap {
                    IPAddress(bytes: $0)?.description
                }
            } catch Failure.noRecords {
                continue
            }
        }
        guard !found.isEmpty else { throw Failure.noRecords(name, "A or AAAA") }
        return found
    }

    /// Records of `type` at `name`, following up to eight CNAMEs (a server without the target's zone answers with
    /// the CNAME alone).
    private func records(_ name: String, type: Int32, typeName: String) async throws -> [[UInt8]] {
        var current = name
        for _ in 0..<8 {
            let answer = try await query(current, type: type, typeName: typeName)
            let matching = answer.filter { $0.type == type }.map(\.data)
            if !matching.isEmpty { return matching }
            guard let alias = answer.first(where: { $0.type == Self.typeCNAME }) else {
                throw Failure.noRecords(current, typeName)
            }
            current = String(decoding: alias.data, as: UTF8.self)
        }
        throw Failure.cnameLoop(name)
    }

    private func query(_ name: String, type: Int32, typeName: String) async throws -> [(type: Int32, data: [UInt8])] {
        let server = self.server, timeout = Int32(timeoutSeconds)
        return try await NIOThreadPool.singleton.runIfActive {
            var buffer = [UInt8](repeating: 0, count: 32 * 1024)
            let count = buffer.withUnsafeMutableBufferPointer { out in
                if let server {
                    return signet_dns_query(
                        server.host, Int32(server.port), name, type, timeout, out.baseAddress, Int32(out.count))
                }
                return signet_dns_query(nil, 0, name, type, timeout, out.baseAddress, Int32(out.count))
            }
            switch count {
            case -1: throw Failure.noSuchName(name)
            case -2: throw Failure.noRecords(name, typeName)
            case ..<0: throw Failure.failed(name, typeName)
            default: break
            }
            var records: [(type: Int32, data: [UInt8])] = []
            var index = 0
            for _ in 0..<count {
                let recordType = Int32(buffer[index]) << 8 | Int32(buffer[index + 1])
                let length = Int(buffer[index + 2]) << 8 | Int(buffer[index + 3])
                records.append((recordType, Array(buffer[(index + 4)..<(index + 4 + length)])))
                index += 4 + length
            }
            return records
        }
    }
}
