import Foundation

/// BIND (Debian's `named`) as the authoritative server of a test zone on a loopback port: A records point every
/// name of the zone at 127.0.0.1, and a TSIG key may add TXT records by RFC 2136 dynamic update, as certbot's and
/// lego's rfc2136 plugins do. Signet's dns-01 validator asks it too (`acme.resolver`).
final class AuthoritativeDNS: @unchecked Sendable {
    // @unchecked: the Process is only touched by its owner.
    let zone: String
    let port: Int
    let keyName = "signet-test"
    let secret: String
    let directory: String
    let process: Process

    init(zone: String) throws {
        self.zone = zone
        directory = try Fixtures.temporaryDirectory("signet-dns")
        port = try freePort()
        secret = Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        try """
        $TTL 5
        @ IN SOA ns.\(zone). admin.\(zone). 1 60 60 3600 5
        @ IN NS ns.\(zone).
        @ IN A 127.0.0.1
        * IN A 127.0.0.1
        ; a name whose challenge record is delegated elsewhere by CNAME, as acme-dns setups do
        _acme-challenge.alias IN CNAME delegated.\(zone).
        """.write(to: directory + "/zone.db")
        try """
        key "\(keyName)" { algorithm hmac-sha256; secret "\(secret)"; };
        options {
            directory "\(directory)";
            pid-file "\(directory)/named.pid";
            listen-on port \(port) { 127.0.0.1; };
            listen-on-v6 { none; };
            recursion no;
            dnssec-validation no;
        };
        zone "\(zone)" { type primary; file "\(directory)/zone.db"; update-policy { grant \(keyName) zonesub TXT; }; };
        """.write(to: directory + "/named.conf")
        let check = try Tool.run("named-checkconf", [directory + "/named.conf"])
        guard check.succeeded else { throw Tool.ToolMissing(name: "a valid named.conf: \(check.output)\(check.error)") }
        process = Process()
        process.executableURL = URL(fileURLWithPath: try Tool.which("named"))
        process.arguments = ["-g", "-c", directory + "/named.conf", "-u", NSUserName()]
        let log = FileHandle(forWritingAtPath: "/dev/null")
        process.standardOutput = log
        process.standardError = log
        try process.run()
        SuiteProcesses.register(process)
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if let answer = try? Tool.run(
                "dig", ["@127.0.0.1", "-p", "\(port)", "+short", "+time=1", "+tries=1", "probe.\(zone)", "A"]),
                answer.output.contains("127.0.0.1")
            {
                return
            }
            Thread.sleep(forTimeInterval: 0.2)
        }
        process.terminate()
        throw Tool.ToolMissing(name: "named answering on port \(port) within 20 s")
    }

    /// Adds a TXT record with nsupdate, signed with the zone's TSIG key.
    func addTXT(_ name: String, _ value: String) throws {
        let result = try Tool.run(
            "nsupdate", ["-y", "hmac-sha256:\(keyName):\(secret)"],
            input: """
                server 127.0.0.1 \(port)
                update add \(name) 5 TXT "\(value)"
                send

                """)
        guard result.succeeded else { throw Tool.ToolMissing(name: "nsupdate: \(result.error)") }
    }

    deinit {
        process.terminate()
        process.waitUntilExit()
    }
}
