// Drawing a flame graph as SVG (see flamegraph_svg.h).
#include "viewer/flamegraph_svg.h"

#include <fmt/core.h>

#include <algorithm>
#include <map>

#include "report/json_text.h"

namespace heapkeeper::view {
namespace {

constexpr double kWidth = 1200, kPad = 10, kInner = kWidth - 2 * kPad;
constexpr double kFrameHeight = 16, kTop = 52, kBottom = 30;
constexpr double kCharWidth = 7.3;  // 12px monospace, as the labels are set
constexpr double kMinWidth = 0.1;   // pixels: narrower frames are left out

struct Node {
  std::string name;
  uint64_t bytes = 0;
  std::map<std::string, size_t> children;  // by name: siblings in name order, as flamegraph.pl
};

class Tree {
 public:
  explicit Tree(const std::vector<analysis::FoldedStack>& stacks) : nodes_(1) {
    nodes_[0].name = "all";
    for (const analysis::FoldedStack& stack : stacks) {
      size_t at = 0;
      nodes_[0].bytes += stack.bytes;
      for (const std::string& frame : stack.frames) {
        auto [it, fresh] = nodes_[at].children.try_emplace(frame, nodes_.size());
        const size_t child = it->second;
        if (fresh) nodes_.push_back({frame, 0, {}});
        nodes_[child].bytes += stack.bytes;
        at = child;
      }
    }
  }
  const Node& node(size_t index) const { return nodes_[index]; }
  int depth(size_t index = 0) const {
    int deepest = 0;
    for (const auto& [name, child] : nodes_[index].children) deepest = std::max(deepest, 1 + depth(child));
    return deepest;
  }

 private:
  std::vector<Node> nodes_;
};

// Text fit for XML: bytes that are not UTF-8 (and control characters) shown as \xNN, markup
// characters escaped.
std::string xml_text(const std::string& raw) {
  std::string out;
  for (char c : report::printable_json_text(report::json_text(raw))) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// The label a frame of `width` pixels shows: the name, or its start and "..", or nothing. Cut on
// a character boundary (names are UTF-8 once made printable).
std::string label(const std::string& printable, double width) {
  const auto fits = static_cast<size_t>(std::max(0.0, (width - 6) / kCharWidth));
  if (fits < 3) return "";
  size_t characters = 0, end = 0;
  while (end < printable.size() && characters < fits) {
    ++end;
    while (end < printable.size() && (static_cast<unsigned char>(printable[end]) & 0xC0) == 0x80) ++end;
    ++characters;
  }
  if (end >= printable.size()) return printable;
  size_t cut = 0;
  for (size_t kept = 0; kept + 2 < fits; ++kept) {
    ++cut;
    while (cut < printable.size() && (static_cast<unsigned char>(printable[cut]) & 0xC0) == 0x80) ++cut;
  }
  return printable.substr(0, cut) + "..";
}

// A stable colour per name: greens for live memory (flamegraph.pl's "mem" palette), reds for
// leaks; shades vary by name so neighbours are told apart.
std::string colour(const std::string& name, bool leaks) {
  uint32_t hash = 2166136261u;
  for (unsigned char c : name) hash = (hash ^ c) * 16777619u;
  const double shade = static_cast<double>(hash % 1000) / 1000.0;
  if (leaks) return fmt::format("rgb({},{},{})", 205 + static_cast<int>(50 * shade), static_cast<int>(80 * shade), 40);
  return fmt::format("rgb({},{},{})", static_cast<int>(60 * shade), 170 + static_cast<int>(60 * shade),
                     90 + static_cast<int>(80 * shade));
}

std::string human(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 4) value /= 1024, ++unit;
  return unit == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.1f} {}", value, units[unit]);
}

class Drawing {
 public:
  Drawing(const Tree& tree, const std::string& title, bool leaks, double height)
      : tree_(tree), title_(title), leaks_(leaks), height_(height) {}

  void frame(size_t index, double x, int depth) {
    const Node& node = tree_.node(index);
    const uint64_t total = tree_.node(0).bytes;
    const double fraction = total == 0 ? 0 : static_cast<double>(node.bytes) / static_cast<double>(total);
    const double width = fraction * kInner;
    if (width < kMinWidth) return;
    const double y = height_ - kBottom - (depth + 1) * kFrameHeight;
    const std::string name = xml_text(node.name);
    const std::string title =
        fmt::format("{} ({} bytes, {}, {:.2f}%)", name, node.bytes, human(node.bytes), 100 * fraction);
    out_ += fmt::format(
        "<g class=\"frame\" data-name=\"{}\" data-bytes=\"{}\" data-depth=\"{}\" data-x=\"{:.9f}\" "
        "data-w=\"{:.9f}\"><title>{}</title><rect x=\"{:.2f}\" y=\"{:.1f}\" width=\"{:.2f}\" height=\"{:.1f}\" "
        "fill=\"{}\" rx=\"2\"/><text x=\"{:.2f}\" y=\"{:.1f}\">{}</text></g>\n",
        name, node.bytes, depth, (x - kPad) / kInner, fraction, title, x, y, width, kFrameHeight - 1,
        colour(node.name, leaks_), x + 3, y + kFrameHeight - 4.5, label(name, width));
    double child_x = x;
    for (const auto& [child_name, child] : node.children) {
      frame(child, child_x, depth + 1);
      child_x += static_cast<double>(tree_.node(child).bytes) / static_cast<double>(total) * kInner;
    }
  }

  std::string svg() {
    std::string head = fmt::format(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n"
        "<svg version=\"1.1\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" "
        "viewBox=\"0 0 {0} {1}\" data-total-bytes=\"{2}\" data-inner-width=\"{3}\">\n"
        "<style>text {{ font: 12px monospace; fill: #000; pointer-events: none; }} "
        "g.frame rect {{ stroke: #fff; stroke-width: 0.5; cursor: pointer; }} "
        "g.frame:hover rect {{ stroke: #000; stroke-width: 1; }} "
        "#title {{ font: bold 17px sans-serif; }} #subtitle, #details, #reset {{ font: 12px sans-serif; }} "
        "#reset {{ cursor: pointer; fill: #06c; }}</style>\n"
        "<rect width=\"100%\" height=\"100%\" fill=\"#fafafa\"/>\n"
        "<text id=\"title\" x=\"{4}\" y=\"22\" text-anchor=\"middle\">{5}</text>\n"
        "<text id=\"subtitle\" x=\"{4}\" y=\"40\" text-anchor=\"middle\">{6}: {7} ({2} bytes); a frame's width "
        "is the {8} allocated under it. Click a frame to zoom.</text>\n"
        "<text id=\"reset\" x=\"{9}\" y=\"40\" visibility=\"hidden\">Reset zoom</text>\n"
        "<text id=\"details\" x=\"{9}\" y=\"{10}\"> </text>\n",
        kWidth, height_, tree_.node(0).bytes, kInner, kWidth / 2, xml_text(title_), leaks_ ? "Leaked" : "Live",
        human(tree_.node(0).bytes), leaks_ ? "leaked memory" : "live memory", kPad, height_ - 10);
    return head + out_ + kScript + "</svg>\n";
  }

 private:
  // Hover shows a frame's title at the bottom; a click zooms to it (its subtree fills the width,
  // its callers stay, full width, below); "Reset zoom" undoes it.
  static constexpr const char* kScript = R"(<script type="text/ecmascript"><![CDATA[
(function () {
  var svg = document.documentElement;
  var inner = parseFloat(svg.getAttribute('data-inner-width')), pad = (parseFloat(svg.getAttribute('width')) - inner) / 2;
  var frames = Array.prototype.slice.call(document.querySelectorAll('g.frame'));
  var details = document.getElementById('details'), reset = document.getElementById('reset');
  function fit(name, width) {
    var n = Math.floor((width - 6) / 7.3);
    if (n < 3) return '';
    return name.length <= n ? name : name.substring(0, n - 2) + '..';
  }
  function zoom(x0, w0, d0) {
    frames.forEach(function (g) {
      var x = parseFloat(g.getAttribute('data-x')), w = parseFloat(g.getAttribute('data-w'));
      var d = parseInt(g.getAttribute('data-depth'), 10), eps = 1e-9, nx, nw;
      if (d < d0) { if (x > x0 + eps || x + w < x0 + w0 - eps) { g.style.display = 'none'; return; } nx = 0; nw = 1; }
      else { if (x < x0 - eps || x + w > x0 + w0 + eps) { g.style.display = 'none'; return; } nx = (x - x0) / w0; nw = w / w0; }
      g.style.display = '';
      var rect = g.querySelector('rect'), text = g.querySelector('text');
      rect.setAttribute('x', (pad + nx * inner).toFixed(2));
      rect.setAttribute('width', (nw * inner).toFixed(2));
      text.setAttribute('x', (pad + nx * inner + 3).toFixed(2));
      text.textContent = fit(g.getAttribute('data-name'), nw * inner);
    });
    reset.setAttribute('visibility', d0 > 0 || w0 < 1 ? 'visible' : 'hidden');
  }
  frames.forEach(function (g) {
    g.addEventListener('click', function () {
      zoom(parseFloat(g.getAttribute('data-x')), parseFloat(g.getAttribute('data-w')),
           parseInt(g.getAttribute('data-depth'), 10));
    });
    g.addEventListener('mouseover', function () { details.textContent = g.querySelector('title').textContent; });
    g.addEventListener('mouseout', function () { details.textContent = ' '; });
  });
  reset.addEventListener('click', function () { zoom(0, 1, 0); });
})();
]]></script>
)";

  const Tree& tree_;
  const std::string& title_;
  bool leaks_;
  double height_;
  std::string out_;
};

}  // namespace

std::string flamegraph_svg(const std::vector<analysis::FoldedStack>& stacks, const std::string& title, bool leaks) {
  const Tree tree(stacks);
  const double height = kTop + (tree.depth() + 1) * kFrameHeight + kBottom;
  Drawing drawing(tree, title, leaks, height);
  drawing.frame(0, kPad, 0);
  return drawing.svg();
}

}  // namespace heapkeeper::view
