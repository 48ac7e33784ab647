//! What users type: commands, names, and text made safe to show to others.

/// Longest nickname or room name, in bytes.
pub(crate) const MAX_NAME: usize = 24;

/// One line from a user, parsed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Command<'a> {
    /// A plain line, to say in the room (`//text` says `/text`).
    Say(&'a str),
    /// `/me ACTION`: `* NAME ACTION` to the room.
    Me(&'a str),
    /// `/msg NAME TEXT`: to one user only.
    Msg {
        to: &'a str,
        text: &'a str,
    },
    Nick(&'a str),
    Join(&'a str),
    Who,
    Quit,
    Unknown(&'a str),
}

impl<'a> Command<'a> {
    /// Any whitespace (a space, a tab) separates a command from its
    /// argument; command names are read in any case.
    pub(crate) fn parse(line: &'a str) -> Self {
        if line.starts_with("//") {
            return Command::Say(&line[1..]);
        }
        let Some(command) = line.strip_prefix('/') else {
            return Command::Say(line);
        };
        let (verb, argument) = command
            .split_once(char::is_whitespace)
            .unwrap_or((command, ""));
        let argument = argument.trim();
        let is = |name: &str| verb.eq_ignore_ascii_case(name);
        if is("nick") {
            Command::Nick(argument)
        } else if is("join") {
            Command::Join(argument.strip_prefix('#').unwrap_or(argument))
        } else if is("me") {
            Command::Me(argument)
        } else if is("msg") {
            let (to, text) = argument
                .split_once(char::is_whitespace)
                .unwrap_or((argument, ""));
            Command::Msg {
                to,
                text: text.trim_start(),
            }
        } else if is("who") {
            Command::Who
        } else if is("quit") {
            Command::Quit
        } else {
            Command::Unknown(verb)
        }
    }
}

/// Whether `name` can be a nickname or a room name: short, and made of
/// characters that cannot be confused with the protocol's own (nor with
/// each other: no look-alike letters from other scripts).
pub(crate) fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A name as it is compared: `Bob` and `bob` are one name. Names are
/// ASCII (see [`valid_name`]), so this is all there is to case folding.
pub(crate) fn fold(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// Replaces what could change how other users' terminals show the text:
/// control characters (other than tab), which could be escape sequences
/// rewriting their screen, and format characters (Unicode category Cf),
/// which include the bidirectional controls that reorder text ("Trojan
/// Source") and invisible characters that can hide it.
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if is_unsafe(c) { '\u{fffd}' } else { c })
        .collect()
}

/// Whether `text` is as [`printable`] would leave it: what the server
/// sends has been through it, so a line from elsewhere (another server,
/// through Redis) that is not may be a forgery.
#[cfg(feature = "redis")]
pub(crate) fn is_printable(text: &str) -> bool {
    !text.chars().any(is_unsafe)
}

/// A control character (but tab) or a format character.
fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\t') || is_format(c)
}

/// Whether `c` is a format character (general category Cf, Unicode 16),
/// but for the zero-width joiner and non-joiner: emoji sequences (👩‍💻)
/// and Persian and Indic text need them, and they can neither reorder nor
/// hide text.
fn is_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{180E}'
            | '\u{200B}'
            | '\u{200E}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

/// `text` made printable and cut to `max` characters, for quoting what a
/// user typed in a reply (an unknown command, a name that is not there).
pub(crate) fn quote(text: &str, max: usize) -> String {
    let mut quoted = printable(text);
    if let Some((cut, _)) = quoted.char_indices().nth(max) {
        quoted.truncate(cut);
        quoted.push('…');
    }
    quoted
}
