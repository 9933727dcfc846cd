import Foundation

/// Starts one of the Python test doubles, which print `READY <port>` once they listen on loopback.
enum PythonDouble {
    static func launch(_ script: String, arguments: [String], name: String) throws -> (process: Process, port: Int) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try Tool.which("python3"))
        process.arguments = [Fixtures.packageRoot + "/Tests/" + script] + arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try process.run()
        let line = String(decoding: output.fileHandleForReading.availableData, as: UTF8.self)
        guard
            let port = line.split(separator: " ").last.flatMap({
                Int($0.trimmingCharacters(in: .whitespacesAndNewlines))
            })
        else {
            process.terminate()
            throw Tool.ToolMissing(name: "\(name) (it printed '\(line)')")
        }
        return (process, port)
    }
}
