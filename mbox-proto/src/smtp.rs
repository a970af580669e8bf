//! SMTP (RFC 5321): the client's command lines, for what a log records of a mail transaction
//! (HELO/EHLO, MAIL FROM, RCPT TO), and where the message data after DATA ends.

/// A client command line, its argument as a slice of the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// HELO or EHLO and the name the client gives.
    Helo(&'a [u8]),
    /// MAIL FROM: the reverse path as written (`<a@b>`), parameters left out.
    MailFrom(&'a [u8]),
    /// RCPT TO: the forward path as written.
    RcptTo(&'a [u8]),
    /// DATA: the message follows, up to a line holding only `.`.
    Data,
    /// STARTTLS: what follows is TLS.
    StartTls,
    Reset,
    Quit,
    /// Any other command (VRFY, NOOP, AUTH, ...).
    Other,
}

/// Longest command line read (RFC 5321 4.5.3.1.4: 512 octets; clients send longer).
pub const MAX_LINE: usize = 4096;

/// The first line of `buf` (without its CRLF) and the bytes it takes, once a line end has come.
pub fn line(buf: &[u8]) -> Option<(&[u8], usize)> {
    let end = memchr::memchr(b'\n', buf)?;
    let line = &buf[..end];
    Some((line.strip_suffix(b"\r").unwrap_or(line), end + 1))
}

/// Reads a command line.
pub fn command(line: &[u8]) -> Command<'_> {
    let (verb, rest) = match line.iter().position(|&b| b == b' ' || b == b':') {
        Some(at) => (&line[..at], &line[at..]),
        None => (line, &line[line.len()..]),
    };
    let is = |w: &[u8]| verb.eq_ignore_ascii_case(w);
    let arg = rest.trim_ascii();
    // `MAIL FROM:<path> SIZE=...`: the path, up to its closing bracket (or the first space).
    let path = |prefix: &[u8]| -> Option<&[u8]> {
        let after = arg.get(..prefix.len()).filter(|p| p.eq_ignore_ascii_case(prefix)).map(|_| arg[prefix.len()..].trim_ascii_start())?;
        let end = match after.first() {
            Some(b'<') => after.iter().position(|&b| b == b'>').map_or(after.len(), |e| e + 1),
            _ => after.iter().position(|&b| b == b' ').unwrap_or(after.len()),
        };
        Some(&after[..end])
    };
    if is(b"HELO") || is(b"EHLO") {
        Command::Helo(arg)
    } else if is(b"MAIL") {
        path(b"FROM:").map_or(Command::Other, Command::MailFrom)
    } else if is(b"RCPT") {
        path(b"TO:").map_or(Command::Other, Command::RcptTo)
    } else if is(b"DATA") {
        Command::Data
    } else if is(b"STARTTLS") {
        Command::StartTls
    } else if is(b"RSET") {
        Command::Reset
    } else if is(b"QUIT") {
        Command::Quit
    } else {
        Command::Other
    }
}

/// Where the message data at the start of `buf` ends: the bytes through the line holding only
/// `.`, once it has come. `at_line_start`: `buf` starts a line (true just after DATA).
pub fn data_end(buf: &[u8], at_line_start: bool) -> Option<usize> {
    if at_line_start && (buf.starts_with(b".\r\n") || buf.starts_with(b".\n")) {
        return Some(if buf[1] == b'\r' { 3 } else { 2 });
    }
    let crlf = memchr::memmem::find(buf, b"\n.\r\n").map(|at| at + 4);
    let lf = memchr::memmem::find(buf, b"\n.\n").map(|at| at + 3);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_their_arguments() {
        assert_eq!(command(b"EHLO mail.example.com"), Command::Helo(b"mail.example.com"));
        assert_eq!(command(b"helo [IPv6:2003::1]"), Command::Helo(b"[IPv6:2003::1]"));
        assert_eq!(command(b"MAIL FROM:<a@b.c> SIZE=100"), Command::MailFrom(b"<a@b.c>"));
        assert_eq!(command(b"mail from: <a@b.c>"), Command::MailFrom(b"<a@b.c>"));
        assert_eq!(command(b"RCPT TO:<x@y>"), Command::RcptTo(b"<x@y>"));
        assert_eq!(command(b"DATA"), Command::Data);
        assert_eq!(command(b"STARTTLS"), Command::StartTls);
        assert_eq!(command(b"MAIL"), Command::Other);
        assert_eq!(command(b""), Command::Other);
        assert_eq!(line(b"QUIT\r\nx"), Some((&b"QUIT"[..], 6)));
        assert_eq!(line(b"QUI"), None);
    }

    #[test]
    fn the_data_ends_at_a_lone_dot() {
        assert_eq!(data_end(b"Subject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n", true), Some(21));
        assert_eq!(data_end(b".\r\nQUIT", true), Some(3));
        assert_eq!(data_end(b"hi\r\n..\r\n", true), None, "a dot-stuffed line");
        assert_eq!(data_end(b"hi\r\n", true), None);
    }
}
