//! The local terminal for `-it`: raw mode, window size and SIGWINCH.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use nix::sys::termios::{self, SetArg, Termios};

/// A terminal's size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSize {
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
}

impl From<WindowSize> for wire::v1::TerminalSize {
    fn from(s: WindowSize) -> wire::v1::TerminalSize {
        wire::v1::TerminalSize {
            rows: u32::from(s.rows),
            cols: u32::from(s.cols),
        }
    }
}

nix::ioctl_read_bad!(tiocgwinsz, libc::TIOCGWINSZ, libc::winsize);

/// The window size of the terminal on `fd`; `None` when `fd` is not a terminal.
pub fn window_size(fd: BorrowedFd<'_>) -> Option<WindowSize> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    use std::os::fd::AsRawFd;
    // SAFETY: TIOCGWINSZ writes one `winsize` into the pointer we pass, which points at a
    // live, properly aligned local; the fd is borrowed, so it stays open for the call.
    let result = unsafe { tiocgwinsz(fd.as_raw_fd(), &mut ws) };
    match result {
        Ok(_) if ws.ws_col > 0 && ws.ws_row > 0 => Some(WindowSize {
            cols: ws.ws_col,
            rows: ws.ws_row,
        }),
        _ => None,
    }
}

/// Whether `fd` is a terminal.
pub fn is_terminal(fd: BorrowedFd<'_>) -> bool {
    termios::tcgetattr(fd).is_ok()
}

/// Puts a terminal in raw mode until dropped, then restores what it was (also when the
/// command fails or panics on the way).
pub struct RawMode<Fd: AsFd> {
    fd: Fd,
    saved: Termios,
}

impl<Fd: AsFd> RawMode<Fd> {
    /// Switches `fd` to raw mode: no echo, no line editing, no signal keys (Ctrl-C goes to
    /// the container as a byte), no output post-processing.
    pub fn enable(fd: Fd) -> io::Result<RawMode<Fd>> {
        let saved = termios::tcgetattr(fd.as_fd()).map_err(io::Error::from)?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd.as_fd(), SetArg::TCSANOW, &raw).map_err(io::Error::from)?;
        Ok(RawMode { fd, saved })
    }
}

impl<Fd: AsFd> Drop for RawMode<Fd> {
    fn drop(&mut self) {
        // Nothing useful can be done if restoring fails: the fd is gone with the terminal.
        let _ = termios::tcsetattr(self.fd.as_fd(), SetArg::TCSADRAIN, &self.saved);
    }
}

/// A stream of window changes: yields the new size each time SIGWINCH arrives.
pub struct WindowChanges {
    signal: tokio::signal::unix::Signal,
}

impl WindowChanges {
    /// Starts listening for SIGWINCH.
    pub fn new() -> io::Result<WindowChanges> {
        let signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())?;
        Ok(WindowChanges { signal })
    }

    /// Waits for the next change and returns the size of the terminal on `fd` then; `None`
    /// when the signal stream ended.
    pub async fn next(&mut self, fd: BorrowedFd<'_>) -> Option<Option<WindowSize>> {
        self.signal.recv().await?;
        Some(window_size(fd))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::pty::openpty;

    // A real pseudo terminal: raw mode must switch echo off and restore it on drop, and the
    // window size set on the master must be what we read.
    #[test]
    fn raw_mode_round_trip_and_window_size_on_a_pty() {
        let winsize = libc::winsize {
            ws_row: 40,
            ws_col: 132,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = openpty(Some(&winsize), None).unwrap();
        assert!(is_terminal(pty.slave.as_fd()));
        assert_eq!(
            window_size(pty.slave.as_fd()),
            Some(WindowSize {
                cols: 132,
                rows: 40
            })
        );
        let echo = |fd: BorrowedFd<'_>| {
            termios::tcgetattr(fd)
                .unwrap()
                .local_flags
                .contains(termios::LocalFlags::ECHO)
        };
        assert!(echo(pty.slave.as_fd()));
        {
            let _raw = RawMode::enable(pty.slave.as_fd()).unwrap();
            assert!(!echo(pty.slave.as_fd()));
        }
        assert!(echo(pty.slave.as_fd()));
    }

    #[test]
    fn a_pipe_is_not_a_terminal() {
        let (r, _w) = nix::unistd::pipe().unwrap();
        assert!(!is_terminal(r.as_fd()));
        assert_eq!(window_size(r.as_fd()), None);
        assert!(RawMode::enable(r.as_fd()).is_err());
    }
}
