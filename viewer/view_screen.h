// The terminal of `heapkeeper view`: one curses (ncursesw) session, its colours and the few
// drawing primitives the screens use. Everything that knows about curses is here and in the
// screens' .cpp files; the tables and the chart are plain text (view_rows.h, view_chart.h).
//
// Colours follow https://no-color.org: with NO_COLOR set (to anything but ""), or on a terminal
// without colours, no colour is ever set; roles fall back to bold and reverse video. UTF-8 is
// used (braille chart, arrows) only when the locale's codeset is UTF-8; otherwise all output is
// ASCII and non-ASCII text from the tracked process is shown as '?'.
#pragma once

#include <wchar.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace heapkeeper::view {

enum class Role {
  kNormal,
  kTitle,
  kBanner,
  kLabel,
  kValue,
  kTabActive,
  kTabInactive,
  kColumnHeader,
  kColumnHeaderSorted,
  kSelected,
  kLive,
  kLeaked,
  kFooterKey,
  kFooterLabel,
  kStatus,
  kError,
  kDim,
};

struct Key {
  enum Type { kNone, kCharacter, kFunction } type = kNone;
  wint_t value = 0;  // a character, or a curses KEY_* code
  bool is(wint_t character) const { return type == kCharacter && value == character; }
  bool is_function(int code) const { return type == kFunction && value == static_cast<wint_t>(code); }
};

class Screen {
 public:
  // Starts curses on the controlling terminal; null with `error` set when stdin/stdout is not
  // a terminal or the terminal type is unknown. Only one Screen may exist at a time.
  static std::unique_ptr<Screen> start(std::string& error);
  ~Screen();
  Screen(const Screen&) = delete;
  Screen& operator=(const Screen&) = delete;

  bool utf8() const { return utf8_; }
  bool colors() const { return colors_; }
  int rows() const;
  int columns() const;

  // Draws `text` at (y, x) in at most `width` cells (clipped to the screen); with `pad`, fills
  // the rest of the width with spaces in the same role. Returns the cells drawn.
  int put(int y, int x, const std::string& text, int width, Role role, bool pad = false);
  // Display width of `text` as put() would draw it.
  int width_of(const std::string& text) const;
  void clear_all();
  void present();
  // Places the visible cursor at (y, x), or hides it when y < 0.
  void cursor(int y, int x);
  // Waits up to `timeout_ms` for a key.
  Key read_key(int timeout_ms);
  // A SIGINT, SIGTERM or SIGHUP arrived: the caller should leave cleanly.
  static bool interrupted();

  // Below kMinimumColumns x kMinimumRows the screens draw only draw_too_small()'s line; below
  // kCompactColumns x kCompactRows they draw their compact layout.
  static constexpr int kMinimumColumns = 60, kMinimumRows = 15;
  static constexpr int kCompactColumns = 80, kCompactRows = 24;
  bool too_small() const { return columns() < kMinimumColumns || rows() < kMinimumRows; }
  bool compact() const { return columns() < kCompactColumns || rows() < kCompactRows; }
  void draw_too_small();
  // htop-style key bar: each key in bold, its label in reverse video (or the footer colours).
  void draw_footer(int y, const std::vector<std::pair<std::string, std::string>>& keys);
  // A one-line run of differently styled texts from (y, x) within `width` cells; returns the end x.
  int draw_segments(int y, int x, int width, const std::vector<std::pair<std::string, Role>>& segments);

 private:
  Screen() = default;
  int attributes_of(Role role) const;
  bool utf8_ = false;
  bool colors_ = false;
  void* terminal_ = nullptr;  // SCREEN*
};

}  // namespace heapkeeper::view
