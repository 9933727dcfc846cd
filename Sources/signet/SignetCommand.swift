import ArgumentParser

@main
struct SignetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "signet",
        abstract: "A private certificate authority for Kubernetes and Istio gateways.",
        subcommands: [
            ServeCommand.self, CACommand.self, TokenCommand.self, IssueCommand.self, CertsCommand.self,
            ACMECommand.self, ControllerCommand.self, LedgerCommand.self,
        ]
    )
}

/// Where the server-side commands find the ledger: the same resolution `signet serve` uses.
struct LedgerLocation: ParsableArguments {
    @Option(name: .customLong("config"), help: "The server's signet.yaml, to find its ledger.")
    var configPath: String?

    @Option(help: "The ledger's SQLite file (default: <dataDirectory>/ledger.sqlite).")
    var database: String?
}
