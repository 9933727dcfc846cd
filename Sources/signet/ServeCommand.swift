import ArgumentParser
import Logging
import SignetLogging
import SignetServer

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the issuing API.",
        discussion: """
            With no configuration at all, data lives in ./signet-data, a development CA is created there on first \
            start, and the API listens for HTTPS on 127.0.0.1:8443 with a certificate from that CA. Environment \
            variables (SIGNET_LISTEN, SIGNET_DATA_DIR, SIGNET_TLS=http, ...) override the file; see the README.
            """
    )

    @Option(name: .customLong("config"), help: "A signet.yaml file.")
    var configPath: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    func run() async throws {
        let configuration = try ServerConfiguration.load(path: configPath)
        configuration.logFormat.bootstrap()
        var logger = Logger(label: "signet")
        logger.logLevel = logLevel
        let server = try await SignetServer.prepare(configuration, logger: logger)
        try await server.run()
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
