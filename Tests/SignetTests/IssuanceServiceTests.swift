import Foundation
import Logging
import SignetAuthority
import SignetLedger
import SignetServer
import SwiftASN1
import Synchronization
import Testing
import X509

/// The issuance pipeline over a real ledger, with serials from a test's sequence.
@Suite("issuance service")
struct IssuanceServiceTests {
    @Test(
        "a serial already recorded is never recorded twice and never reaches the caller: the certificate is signed again with a new serial; three collisions in a row give up"
    )
    func serialCollisionsAreSignedAgain() async throws {
        let (ca, _) = try await Fixtures.issuingCA()
        let ledger = try CertificateLedger(path: try Fixtures.temporaryDirectory() + "/ledger.sqlite")
        let first = SerialNumbers.random(), second = SerialNumbers.random()
        // Handed out in order: `first` for the first issuance, then `first` again and `second` for the next.
        let sequence = Mutex([first, first, second])
        let service = try IssuanceService(
            ca: ca, ledger: ledger, metrics: SignetMetrics(signerBackend: "file"), logger: Logger(label: "test"),
            serialNumbers: { sequence.withLock { $0.isEmpty ? first : $0.removeFirst() } })
        let caller = Caller(identity: "token:ci", policy: try Fixtures.policy("*.example.com"))
        func request() throws -> IssuanceRequest {
            IssuanceRequest(csrPEM: try Fixtures.csr(dnsNames: ["web.example.com"]))
        }
        let one = try await service.issue(try request(), for: caller)
        let two = try await service.issue(try request(), for: caller)
        #expect(one.entry.serial == SerialNumbers.hex(first))
        #expect(two.entry.serial == SerialNumbers.hex(second), "signed again with the next serial")
        let leaf = try Certificate(pemEncoded: two.leafPEM)
        #expect(leaf.serialNumber == second, "the certificate handed out carries the serial recorded")
        await #expect(throws: LedgerError.serialTaken(SerialNumbers.hex(first))) {
            _ = try await service.issue(try request(), for: caller)
        }
        #expect(try await ledger.certificateCount() == 2)
        #expect(
            try await ledger.auditEvents(limit: 10).filter { $0.action == "certificate.issue" }.count == 2,
            "one event per recorded certificate")
    }
}
