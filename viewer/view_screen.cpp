// Implementation of the live view's terminal (see view_screen.h).
//
// Text is converted to wide characters and clipped by display width (wcwidth), so a double-width
// character or an invalid UTF-8 sequence from the tracked process can never push the layout off
// by a cell. Interrupts only set a flag: the screens leave their loop and curses is ended in the
// destructor, so the terminal is always restored.
#include "viewer/view_screen.h"

#include <curses.h>
#include <langinfo.h>
#include <unistd.h>

#include <atomic>
#include <clocale>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <string>

namespace heapkeeper::view {
namespace {

volatile std::sig_atomic_t g_interrupted = 0;

extern "C" void on_interrupt(int) { g_interrupted = 1; }

struct Palette {
  Role role;
  short foreground, background;
  int color_attributes;  // with colours
  int plain_attributes;  // without
};

constexpr Palette kPalette[] = {
    {Role::kNormal, -1, -1, A_NORMAL, A_NORMAL},
    {Role::kTitle, COLOR_BLACK, COLOR_CYAN, A_BOLD, A_REVERSE | A_BOLD},
    {Role::kBanner, COLOR_WHITE, COLOR_RED, A_BOLD, A_REVERSE | A_BOLD},
    {Role::kLabel, COLOR_CYAN, -1, A_BOLD, A_NORMAL},
    {Role::kValue, -1, -1, A_BOLD, A_BOLD},
    {Role::kTabActive, COLOR_BLACK, COLOR_GREEN, A_BOLD, A_REVERSE | A_BOLD},
    {Role::kTabInactive, -1, -1, A_NORMAL, A_NORMAL},
    {Role::kColumnHeader, COLOR_BLACK, COLOR_GREEN, A_NORMAL, A_REVERSE},
    {Role::kColumnHeaderSorted, COLOR_BLACK, COLOR_CYAN, A_BOLD, A_REVERSE | A_BOLD | A_UNDERLINE},
    {Role::kSelected, COLOR_BLACK, COLOR_CYAN, A_NORMAL, A_REVERSE},
    {Role::kLive, COLOR_GREEN, -1, A_NORMAL, A_NORMAL},
    {Role::kLeaked, COLOR_RED, -1, A_BOLD, A_NORMAL},
    {Role::kFooterKey, -1, -1, A_BOLD, A_BOLD},
    {Role::kFooterLabel, COLOR_BLACK, COLOR_CYAN, A_NORMAL, A_REVERSE},
    {Role::kStatus, COLOR_YELLOW, -1, A_BOLD, A_BOLD},
    {Role::kError, COLOR_RED, -1, A_BOLD, A_BOLD},
    {Role::kDim, -1, -1, A_DIM, A_DIM},
};

bool no_color_requested() {
  const char* value = std::getenv("NO_COLOR");
  return value != nullptr && value[0] != '\0';
}

// The text as wide characters, each with its display width; invalid or unprintable characters
// become '?'.
std::wstring widen(const std::string& text, bool utf8) {
  std::wstring out;
  out.reserve(text.size());
  if (!utf8) {
    for (char c : text) {
      const auto byte = static_cast<unsigned char>(c);
      out += byte >= 0x20 && byte < 0x7f ? static_cast<wchar_t>(byte) : L'?';
    }
    return out;
  }
  std::mbstate_t state{};
  const char* cursor = text.data();
  size_t left = text.size();
  while (left > 0) {
    wchar_t wide = 0;
    const size_t used = std::mbrtowc(&wide, cursor, left, &state);
    if (used == static_cast<size_t>(-1) || used == static_cast<size_t>(-2) || used == 0) {
      out += L'?';
      state = std::mbstate_t{};
      ++cursor;
      --left;
      continue;
    }
    out += wcwidth(wide) < 0 ? L'?' : wide;
    cursor += used;
    left -= used;
  }
  return out;
}

}  // namespace

std::unique_ptr<Screen> Screen::start(std::string& error) {
  if (isatty(STDIN_FILENO) == 0 || isatty(STDOUT_FILENO) == 0) {
    error = "heapkeeper view needs a terminal (stdin and stdout must be a tty)";
    return nullptr;
  }
  std::setlocale(LC_ALL, "");
  const char* term = std::getenv("TERM");
  if (term == nullptr || term[0] == '\0') {
    error = "TERM is not set; heapkeeper view needs to know the terminal type";
    return nullptr;
  }
  std::unique_ptr<Screen> screen(new Screen());
  screen->utf8_ = std::strcmp(nl_langinfo(CODESET), "UTF-8") == 0;
  // newterm (unlike initscr) returns an error instead of exiting on an unknown terminal type.
  SCREEN* terminal = newterm(nullptr, stdout, stdin);
  if (terminal == nullptr) {
    error = std::string("cannot start the terminal UI on terminal type '") + term + "'";
    return nullptr;
  }
  screen->terminal_ = terminal;
  set_term(terminal);
  cbreak();
  noecho();
  nonl();
  keypad(stdscr, TRUE);
  set_escdelay(25);  // Esc clears the filter: do not make it wait a second for a sequence
  curs_set(0);
  if (has_colors() && !no_color_requested()) {
    start_color();
    use_default_colors();
    screen->colors_ = true;
    for (const Palette& p : kPalette) {
      init_pair(static_cast<short>(static_cast<int>(p.role) + 1), p.foreground, p.background);
    }
  }
  struct sigaction action = {};
  action.sa_handler = on_interrupt;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGHUP, &action, nullptr);
  return screen;
}

Screen::~Screen() {
  if (terminal_ == nullptr) return;
  curs_set(1);
  endwin();
  delscreen(static_cast<SCREEN*>(terminal_));
}

bool Screen::interrupted() { return g_interrupted != 0; }

int Screen::rows() const { return LINES; }
int Screen::columns() const { return COLS; }

int Screen::attributes_of(Role role) const {
  const Palette& p = kPalette[static_cast<int>(role)];
  if (!colors_) return p.plain_attributes;
  const bool colored = p.foreground != -1 || p.background != -1;
  return p.color_attributes | (colored ? static_cast<int>(COLOR_PAIR(static_cast<int>(role) + 1)) : 0);
}

int Screen::width_of(const std::string& text) const {
  int width = 0;
  for (wchar_t c : widen(text, utf8_)) width += std::max(0, wcwidth(c));
  return width;
}

int Screen::put(int y, int x, const std::string& text, int width, Role role, bool pad) {
  if (y < 0 || y >= LINES || x < 0 || x >= COLS || width <= 0) return 0;
  width = std::min(width, COLS - x);
  const std::wstring wide = widen(text, utf8_);
  std::wstring shown;
  int used = 0;
  for (wchar_t c : wide) {
    const int w = std::max(0, wcwidth(c));
    if (used + w > width) break;
    shown += c;
    used += w;
  }
  if (pad && used < width) {
    shown.append(static_cast<size_t>(width - used), L' ');
    used = width;
  }
  const int attributes = attributes_of(role);
  attrset(attributes);
  // The bottom-right cell cannot be written without scrolling; curses reports ERR and draws the
  // rest, which is what we want.
  mvaddnwstr(y, x, shown.c_str(), static_cast<int>(shown.size()));
  attrset(A_NORMAL);
  return used;
}

void Screen::draw_too_small() {
  const std::string message =
      "terminal too small (need " + std::to_string(kMinimumColumns) + "x" + std::to_string(kMinimumRows) + "); q quits";
  put(0, 0, message, columns(), Role::kError);
}

void Screen::draw_footer(int y, const std::vector<std::pair<std::string, std::string>>& keys) {
  int x = 0;
  for (const auto& [key, label] : keys) {
    if (x >= columns()) break;
    x += put(y, x, key, columns() - x, Role::kFooterKey);
    x += put(y, x, label + " ", columns() - x, Role::kFooterLabel);
  }
  if (x < columns()) put(y, x, "", columns() - x, Role::kFooterLabel, true);
}

int Screen::draw_segments(int y, int x, int width, const std::vector<std::pair<std::string, Role>>& segments) {
  const int end = x + width;
  for (const auto& [text, role] : segments) {
    if (x >= end) break;
    x += put(y, x, text, end - x, role);
  }
  return x;
}

void Screen::clear_all() { werase(stdscr); }

void Screen::present() { refresh(); }

void Screen::cursor(int y, int x) {
  if (y < 0) {
    curs_set(0);
    return;
  }
  move(y, x);
  curs_set(1);
}

Key Screen::read_key(int timeout_ms) {
  timeout(timeout_ms);
  wint_t value = 0;
  const int kind = get_wch(&value);
  Key key;
  if (kind == ERR) return key;
  key.type = kind == KEY_CODE_YES ? Key::kFunction : Key::kCharacter;
  key.value = value;
  return key;
}

}  // namespace heapkeeper::view
