import Foundation
import SignetACME
import SignetAuthority
import SignetLedger
import Testing

/// The ACME front end's store, against every backend of `StoreConformanceTests.StoreBackend.all`.
extension StoreConformanceTests {
    func account(_ id: String, thumbprint: String, eab: String? = nil) -> ACMEAccount {
        ACMEAccount(
            id: id, directory: "dir", thumbprint: thumbprint, jwk: "{\"kty\":\"EC\",\"id\":\"\(id)\"}", status: .valid,
            contact: ["mailto:ops@example.com"], externalKeyID: eab, createdAt: Date())
    }

    func authorization(_ id: String, account: String, name: String, status: AuthorizationStatus = .pending)
        -> ACMEAuthorization
    {
        ACMEAuthorization(
            id: id, accountID: account, identifier: ACMEIdentifier(type: .dns, value: name), wildcard: false,
            status: status, expires: Date().addingTimeInterval(7 * 86_400), trusted: false,
            challenges: [
                ACMEChallenge(type: .http01, token: "t-\(id)"), ACMEChallenge(type: .dns01, token: "d-\(id)"),
            ])
    }

    func order(_ id: String, account: String, authorizations: [String], replaces: String? = nil) -> ACMEOrder {
        ACMEOrder(
            id: id, accountID: account, status: .pending,
            identifiers: [ACMEIdentifier(type: .dns, value: "a.example.com")], authorizationIDs: authorizations,
            notBefore: nil, notAfter: Date(timeIntervalSince1970: 1_900_000_000), profile: "tlsserver",
            replaces: replaces, expires: Date().addingTimeInterval(86_400), createdAt: Date())
    }

    @Test(
        "ACME nonces: one handed out by one replica is accepted once by another; a forged, altered or expired one never",
        arguments: StoreBackend.all)
    func acmeNonces(_ backend: StoreBackend) async throws {
        let (first, second) = try await backend.makePair()
        let now = Date()
        let nonce = try await first.issueNonce(now: now)
        #expect(try await second.consumeNonce(nonce, now: now))
        #expect(try await !first.consumeNonce(nonce, now: now), "spent, whichever replica is asked")
        #expect(try await !second.consumeNonce(nonce, now: now))
        var altered = Array(nonce)
        altered[3] = altered[3] == "A" ? "B" : "A"
        #expect(try await !second.consumeNonce(String(altered), now: now))
        #expect(try await !second.consumeNonce("not-a-nonce", now: now))
        let old = try await first.issueNonce(now: now.addingTimeInterval(-7200))
        #expect(try await !second.consumeNonce(old, now: now), "expired")
        #expect(try await first.pruneACME(now: now.addingTimeInterval(7200), retention: .seconds(86_400)) >= 1)
        try await first.close()
        try await second.close()
    }

    @Test(
        "ACME accounts and EAB keys: one account per key and directory, found by id and key; contact and status updated; a key change refused when another account holds the key; MAC keys sealed and opened",
        arguments: StoreBackend.all)
    func acmeAccounts(_ backend: StoreBackend) async throws {
        let store = try await backend.make()
        let external = ACMEExternalKey(
            keyID: "kid-1", directory: "dir", label: "team-a", allowedNames: ["*.a.example.com"], createdAt: Date())
        try await store.createExternalKey(external, macKey: [1, 2, 3, 250], actor: "cli")
        let opened = try #require(try await store.externalKey(id: "kid-1"))
        #expect(opened.macKey == [1, 2, 3, 250] && opened.key.label == "team-a")
        #expect(try await store.externalKeys(directory: "dir").map(\.keyID) == ["kid-1"])
        #expect(try await store.externalKeys(directory: "other").isEmpty)
        #expect(try await store.externalKey(id: "nope") == nil)

        let (created, isNew) = try await store.createAccount(account("acc-1", thumbprint: "tp-1", eab: "kid-1"))
        #expect(isNew && created.label == "team-a" && created.allowedNames == ["*.a.example.com"])
        #expect(created.requester == "acme:dir/team-a/acc-1")
        let (again, isNewAgain) = try await store.createAccount(account("acc-2", thumbprint: "tp-1"))
        #expect(!isNewAgain && again.id == "acc-1", "the key's existing account")
        _ = try await store.createAccount(account("acc-3", thumbprint: "tp-3"))
        #expect(try await store.account(directory: "dir", thumbprint: "tp-3")?.id == "acc-3")
        #expect(try await store.accounts(directory: "dir").map(\.id) == ["acc-1", "acc-3"])
        #expect(try await store.accounts(directory: nil).count == 2)

        #expect(try await store.changeAccountKey(id: "acc-3", jwk: "{}", thumbprint: "tp-1") == "acc-1")
        #expect(try await store.changeAccountKey(id: "acc-3", jwk: "{\"new\":1}", thumbprint: "tp-9") == nil)
        #expect(try await store.account(directory: "dir", thumbprint: "tp-9")?.jwk == "{\"new\":1}")
        #expect(try await store.account(directory: "dir", thumbprint: "tp-3") == nil)

        #expect(try await store.revokeExternalKey(id: "kid-1", at: Date(), actor: "cli"))
        #expect(try await !store.revokeExternalKey(id: "kid-1", at: Date(), actor: "cli"), "once")
        #expect(try await store.account(id: "acc-1")?.externalKeyRevoked == true)

        try await store.createOrder(
            order("o-1", account: "acc-1", authorizations: ["z-1"]),
            authorizations: [authorization("z-1", account: "acc-1", name: "a.example.com")], events: [])
        let updated = try #require(
            try await store.updateAccount(id: "acc-1", contact: ["mailto:new@example.com"], status: .deactivated))
        #expect(updated.contact == ["mailto:new@example.com"] && updated.status == .deactivated)
        #expect(try await store.authorization(id: "z-1")?.status == .deactivated, "§7.3.6")
        #expect(
            try await store.updateAccount(id: "acc-1", contact: ["mailto:late@example.com"], status: nil)?.contact
                == ["mailto:new@example.com"], "a deactivated account is not changed")
        let actions = try await store.auditEvents(limit: 20).map(\.action)
        for action in ["acme.eab.create", "acme.account.create", "acme.account.key-change", "acme.eab.revoke"] {
            #expect(actions.contains(action), "\(action) in \(actions)")
        }
        try await store.close()
    }

    @Test(
        "ACME orders: created with their authorizations, read back in order, finalized once, completed in the certificate's transaction, failed, replaced; authorizations reused and updated only from the expected state; expired ones pruned",
        arguments: StoreBackend.all)
    func acmeOrders(_ backend: StoreBackend) async throws {
        let store = try await backend.make()
        _ = try await store.createAccount(account("acc", thumbprint: "tp"))
        try await store.createOrder(
            order("o-1", account: "acc", authorizations: ["z-2", "z-1"]),
            authorizations: [
                authorization("z-1", account: "acc", name: "a.example.com"),
                authorization("z-2", account: "acc", name: "b.example.com"),
            ],
            events: [AuditEvent(at: Date(), actor: "acme:dir/acc", action: "acme.order.create", outcome: .success)])
        let read = try #require(try await store.order(id: "o-1"))
        #expect(read.status == .pending && read.authorizationIDs == ["z-2", "z-1"] && read.profile == "tlsserver")
        #expect(read.identifiers == [ACMEIdentifier(type: .dns, value: "a.example.com")])
        #expect(read.notAfter == Date(timeIntervalSince1970: 1_900_000_000) && read.notBefore == nil)
        #expect(try await store.authorizations(ids: ["z-2", "nope", "z-1"]).map(\.id) == ["z-2", "z-1"])
        #expect(try await store.orders(accountID: "acc", limit: 10) == ["o-1"])

        var processing = try #require(try await store.authorization(id: "z-1"))
        processing.challenges[0].status = .processing
        #expect(try await store.updateAuthorization(processing, expected: .pending))
        #expect(try await store.challengesInProgress().map(\.id) == ["z-1"])
        var valid = processing
        valid.status = .valid
        valid.challenges[0].status = .valid
        valid.challenges[0].validated = Date(timeIntervalSince1970: 1_800_000_000)
        valid.expires = Date(timeIntervalSince1970: 1_900_000_000)
        #expect(try await store.updateAuthorization(valid, expected: .pending))
        #expect(try await !store.updateAuthorization(processing, expected: .pending), "no longer pending")
        #expect(try await store.authorization(id: "z-1") == valid)
        #expect(try await store.challengesInProgress().isEmpty)
        let reusable = try await store.reusableAuthorization(
            accountID: "acc", identifier: ACMEIdentifier(type: .dns, value: "a.example.com"), wildcard: false,
            now: Date())
        #expect(reusable?.id == "z-1")
        #expect(
            try await store.reusableAuthorization(
                accountID: "other", identifier: ACMEIdentifier(type: .dns, value: "a.example.com"), wildcard: false,
                now: Date()) == nil)

        #expect(try await store.beginFinalization(orderID: "o-1"))
        #expect(try await !store.beginFinalization(orderID: "o-1"), "once")
        try await store.failOrder(
            orderID: "o-1", error: ACMEStoredProblem(ACMEError(.badCSR, "the key is too small")), invalid: false)
        let failed = try #require(try await store.order(id: "o-1"))
        #expect(failed.status == .ready && failed.error?.detail == "the key is too small")
        #expect(try await store.beginFinalization(orderID: "o-1"))
        try await store.record(
            entry(serial: "0a", names: ["a.example.com"], notAfter: Date().addingTimeInterval(86_400)),
            event: event("0a"), alongside: .completeOrder(orderID: "o-1", serial: "0a"))
        let done = try #require(try await store.order(id: "o-1"))
        #expect(done.status == .valid && done.certificateSerial == "0a")
        // A certificate whose order is not processing is not recorded either: one transaction.
        await #expect(throws: LedgerError.self) {
            try await store.record(
                entry(serial: "0b", names: ["a.example.com"], notAfter: Date().addingTimeInterval(86_400)),
                event: event("0b"), alongside: .completeOrder(orderID: "o-1", serial: "0b"))
        }
        #expect(try await store.certificate(serial: "0b") == nil)

        try await store.createOrder(
            order("o-2", account: "acc", authorizations: ["z-1"], replaces: "cert-id"), authorizations: [], events: [])
        #expect(try await store.replacingOrders(certificateID: "cert-id") == ["o-2"])
        #expect(
            try await store.advanceRenewal(serials: ["0A", "ff"], at: Date(timeIntervalSince1970: 1_800_000_000)) == 1)
        #expect(try await store.renewalAdvancedAt(serial: "0a") == Date(timeIntervalSince1970: 1_800_000_000))
        #expect(try await store.renewalAdvancedAt(serial: "ff") == nil)

        // Pruning: unfinished orders and unreferenced authorizations expired past the retention go; valid orders stay.
        try await store.createOrder(
            order("o-3", account: "acc", authorizations: ["z-3"]).with(expires: Date().addingTimeInterval(-3 * 86_400)),
            authorizations: [
                authorization("z-3", account: "acc", name: "c.example.com")
                    .with(expires: Date().addingTimeInterval(-3 * 86_400))
            ], events: [])
        #expect(try await store.pruneACME(now: Date(), retention: .seconds(86_400)) == 2)
        #expect(try await store.order(id: "o-3") == nil)
        #expect(try await store.authorization(id: "z-3") == nil)
        #expect(try await store.order(id: "o-1") != nil)
        #expect(try await store.authorization(id: "z-1") != nil, "still referenced by an order")
        try await store.close()
    }
}

extension ACMEOrder {
    fileprivate func with(expires: Date) -> ACMEOrder {
        var copy = self
        copy.expires = expires
        return copy
    }
}

extension ACMEAuthorization {
    fileprivate func with(expires: Date) -> ACMEAuthorization {
        var copy = self
        copy.expires = expires
        return copy
    }
}
